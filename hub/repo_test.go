package hub

import (
	"os"
	"path/filepath"
	"testing"
)

func TestIsRepoID(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "org", "model")
	mustMkdir(t, local)
	t.Chdir(dir)
	tests := []struct {
		s    string
		want bool
	}{
		{"CompVis/stable-diffusion-safety-checker", true},
		{"stable-diffusion-v1-5/stable-diffusion-v1-5", true},
		{"user_1/model.v2", true},
		{"org/model", false}, // exists on disk
		{"./org/model", false},
		{local, false},
		{"gpt2", false}, // no namespace
		{"", false},
		{"a/b/c", false},
		{"org/", false},
		{"/model", false},
		{"org/-model", false},
		{"org/model.", false},
		{"org/mo--del", false},
		{"org/mo..del", false},
		{"org/mo del", false},
		{"../x/y", false},
	}
	for _, tt := range tests {
		if got := IsRepoID(tt.s); got != tt.want {
			t.Errorf("IsRepoID(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
	if _, err := os.Stat("org/model"); err != nil {
		t.Fatal(err)
	}
}

func TestResolveURL(t *testing.T) {
	tests := []struct{ rev, file, want string }{
		{"main", "config.json", "https://hf.co/org/m/resolve/main/config.json"},
		{"refs/pr/1", "safety_checker/model.safetensors", "https://hf.co/org/m/resolve/refs%2Fpr%2F1/safety_checker/model.safetensors"},
		{"v1 beta", "a b/c+d.json", "https://hf.co/org/m/resolve/v1%20beta/a%20b/c%2Bd.json"},
	}
	for _, tt := range tests {
		if got := resolveURL("https://hf.co", "org/m", tt.rev, tt.file); got != tt.want {
			t.Errorf("resolveURL(%q, %q) = %s, want %s", tt.rev, tt.file, got, tt.want)
		}
	}
}

func TestNormalizeETag(t *testing.T) {
	for in, want := range map[string]string{
		`"abc123"`:   "abc123",
		`W/"abc123"`: "abc123",
		`abc123`:     "abc123",
		` "x" `:      "x",
		``:           "",
	} {
		if got := normalizeETag(in); got != want {
			t.Errorf("normalizeETag(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in          string
		start, size int64
		ok          bool
	}{
		{"bytes 100-199/200", 100, 200, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes */200", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		start, size, ok := parseContentRange(tt.in)
		if ok != tt.ok || ok && (start != tt.start || size != tt.size) {
			t.Errorf("parseContentRange(%q) = %d, %d, %v", tt.in, start, size, ok)
		}
	}
}
