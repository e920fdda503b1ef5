package hub

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTextProgress(t *testing.T) {
	var b strings.Builder
	p := NewTextProgress(&b)
	now := time.Unix(1000, 0)
	p.now = func() time.Time { return now }

	p.Update("model.safetensors", 0, 4<<20)
	now = now.Add(50 * time.Millisecond)
	p.Update("model.safetensors", 1<<20, 4<<20) // throttled
	now = now.Add(time.Second)
	p.Update("model.safetensors", 2<<20, 4<<20)
	now = now.Add(time.Second)
	p.Update("model.safetensors", 4<<20, 4<<20)
	p.Update("model.safetensors", 4<<20, 4<<20) // already complete: nothing
	p.Update("config.json", 10, -1)

	out := b.String()
	lines := strings.Split(out, "\r")[1:]
	if len(lines) != 4 {
		t.Fatalf("%d redraws, want 4:\n%q", len(lines), out)
	}
	if !strings.Contains(lines[1], " 50% [============>") || !strings.Contains(lines[1], "2.0 MiB / 4.0 MiB") ||
		!strings.Contains(lines[1], "1.9 MiB/s") {
		t.Errorf("half-way line = %q", lines[1])
	}
	if !strings.Contains(lines[2], "100% [=========================]") || !strings.HasSuffix(lines[2], "\n") ||
		!strings.Contains(lines[2], "2.0 MiB/s") {
		t.Errorf("final line = %q", lines[2])
	}
	if !strings.HasPrefix(lines[3], "config.json 10 B") {
		t.Errorf("unknown-size line = %q", lines[3])
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) || IsTerminal(nil) {
		t.Error("a regular file (or nil) reported as a terminal")
	}
	if tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0); err == nil {
		defer tty.Close()
		if !IsTerminal(tty) {
			t.Error("/dev/tty not reported as a terminal")
		}
	}
}
