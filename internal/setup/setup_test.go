package setup

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestPickWheel(t *testing.T) {
	files := []Wheel{
		{Filename: "torch-2.1.0-cp310-cp310-manylinux1_x86_64.whl"},
		{Filename: "torch-2.1.0-cp311-cp311-manylinux1_x86_64.whl"},
		{Filename: "torch-2.1.0-cp311-cp311-manylinux2014_aarch64.whl"},
		{Filename: "torch-2.1.0-cp311-none-macosx_11_0_arm64.whl"},
		{Filename: "torch-2.1.1-cp311-cp311-manylinux1_x86_64.whl"},
		{Filename: "nvidia_cuda_runtime_cu12-12.1.105-py3-none-manylinux1_x86_64.whl"},
		{Filename: "nvidia_cuda_runtime_cu12-12.1.105-py3-none-win_amd64.whl"},
	}
	cases := []struct{ name, version, tag, arch, want string }{
		{"torch", "2.1.0", "cp311", "x86_64", "torch-2.1.0-cp311-cp311-manylinux1_x86_64.whl"},
		{"torch", "2.1.0", "cp311", "aarch64", "torch-2.1.0-cp311-cp311-manylinux2014_aarch64.whl"},
		{"torch", "2.1.0", "cp312", "x86_64", ""}, // no cp312 wheel and no py3 one
		{"torch", "2.1", "cp311", "x86_64", ""},   // the version is matched whole
		{"nvidia-cuda-runtime-cu12", "12.1.105", "", "x86_64", "nvidia_cuda_runtime_cu12-12.1.105-py3-none-manylinux1_x86_64.whl"},
	}
	for _, c := range cases {
		w, ok := PickWheel(files, c.name, c.version, c.tag, c.arch)
		if ok != (c.want != "") || w.Filename != c.want {
			t.Errorf("PickWheel(%s %s %s %s) = %q, %v; want %q", c.name, c.version, c.tag, c.arch, w.Filename, ok, c.want)
		}
	}
}

// fakeIndex serves a PEP 691 listing of one wheel, and the wheel; sha256 is what the listing says.
func fakeIndex(t *testing.T, body []byte, sha string) (*Index, *int) {
	t.Helper()
	downloads := 0
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("/simple/demo/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/vnd.pypi.simple.v1+json" {
			http.Error(w, "want JSON", http.StatusNotAcceptable)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"files": []Wheel{{
			Filename: "demo-1.0-py3-none-manylinux1_x86_64.whl", URL: srv.URL + "/files/demo.whl",
			Hashes: map[string]string{"sha256": sha}, Size: int64(len(body)),
		}}})
	})
	mux.HandleFunc("/files/demo.whl", func(w http.ResponseWriter, r *http.Request) {
		downloads++
		w.Write(body)
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &Index{URL: srv.URL + "/simple", Client: srv.Client()}, &downloads
}

func TestFetchChecksSHA256AndReuses(t *testing.T) {
	body := []byte("not really a wheel, but bytes with a hash")
	sum := sha256.Sum256(body)
	ix, downloads := fakeIndex(t, body, hex.EncodeToString(sum[:]))
	var progress []int64
	ix.Progress = func(_ string, done, _ int64) { progress = append(progress, done) }
	dir := t.TempDir()
	path, err := ix.Fetch(context.Background(), dir, "demo", "1.0", "cp311", "x86_64")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(body) {
		t.Fatalf("downloaded %q", got)
	}
	if len(progress) == 0 || progress[len(progress)-1] != int64(len(body)) {
		t.Errorf("progress reports %v, want the last to be %d", progress, len(body))
	}
	if _, err := ix.Fetch(context.Background(), dir, "demo", "1.0", "cp311", "x86_64"); err != nil || *downloads != 1 {
		t.Errorf("second fetch: %v, %d downloads (want the file reused)", err, *downloads)
	}

	bad, _ := fakeIndex(t, body, strings.Repeat("0", 64))
	dir2 := t.TempDir()
	if _, err := bad.Fetch(context.Background(), dir2, "demo", "1.0", "cp311", "x86_64"); err == nil || !strings.Contains(err.Error(), "the index says 0000") {
		t.Errorf("wrong sha256: err = %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir2, "*")); len(left) != 0 {
		t.Errorf("a failed download left %v", left)
	}
	if _, err := ix.Fetch(context.Background(), dir, "demo", "2.0", "cp311", "x86_64"); err == nil || !strings.Contains(err.Error(), "no manylinux") {
		t.Errorf("missing version: err = %v", err)
	}
}

func TestExtractRefusesPathsOutside(t *testing.T) {
	dir := t.TempDir()
	whl := filepath.Join(dir, "evil.whl")
	f, _ := os.Create(whl)
	z := zip.NewWriter(f)
	for _, name := range []string{"torch/lib/libok.so", "torch/lib/../../../escape.so"} {
		w, _ := z.Create(name)
		w.Write([]byte("x"))
	}
	z.Close()
	f.Close()
	out := filepath.Join(dir, "out")
	n, err := extractPrefix(whl, "torch/lib/", out)
	if err == nil || !strings.Contains(err.Error(), "leaves the destination") {
		t.Errorf("err = %v, want a refusal", err)
	}
	if n != 1 {
		t.Errorf("%d members written before the refusal, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "escape.so")); err == nil {
		t.Errorf("a member was written outside the destination")
	}
}

func TestTorchVersionAndStd(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  string
		std   string
	}{
		{"2.1 style", map[string]string{"api/torch/version.h": "#define TORCH_VERSION_MAJOR 2\n#define TORCH_VERSION_MINOR 1\n#define TORCH_VERSION_PATCH 0\n#define TORCH_VERSION \"2.1.0\"\n"}, "2.1.0", "-std=c++17"},
		{"headeronly continuation", map[string]string{
			"api/torch/version.h":                 "#include <torch/headeronly/version.h>\n",
			"include/torch/headeronly/version.h":  "#define TORCH_VERSION \\\n  \"2.14.1\"\n",
			"include/ATen/ATen.h":                 "#if !defined(_MSC_VER) && __cplusplus < 202002L\n#error C++20 or later compatible compiler is required to use ATen.\n#endif\n",
			"include/torch/headeronly/unused.txt": "",
		}, "2.14.1", "-std=c++20"},
		{"parts only (Debian 1.13)", map[string]string{"api/torch/version.h": "#define TORCH_VERSION_MAJOR 1\n#define TORCH_VERSION_MINOR 13\n#define TORCH_VERSION_PATCH 0\n"}, "1.13.0", "-std=c++17"},
	}
	for _, c := range cases {
		dir := t.TempDir()
		writeTree(t, dir, c.files)
		got, err := torchVersion(filepath.Join(dir, "include"), filepath.Join(dir, "api"))
		if err != nil || got != c.want {
			t.Errorf("%s: version %q, %v; want %q", c.name, got, err, c.want)
		}
		if std := cxxStd(filepath.Join(dir, "include")); std != c.std {
			t.Errorf("%s: %s, want %s", c.name, std, c.std)
		}
	}
	if _, err := torchVersion(t.TempDir(), t.TempDir()); err == nil {
		t.Errorf("no headers: no error")
	}
}

func TestPointWorkspace(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatal("the go command is needed (it edits go.work)")
	}
	ctx := context.Background()
	app := t.TempDir()
	writeTree(t, app, map[string]string{"go.mod": "module example.com/app\n\ngo 1.26\n"})
	changed, err := PointWorkspace(ctx, app, "/cache/gotch/A")
	if err != nil || !changed {
		t.Fatalf("create: %v, changed=%v", err, changed)
	}
	work, _ := os.ReadFile(filepath.Join(app, "go.work"))
	for _, want := range []string{"go 1.26", "use .", "replace github.com/sugarme/gotch v0.9.1 => /cache/gotch/A"} {
		if !strings.Contains(string(work), want) {
			t.Errorf("go.work lacks %q:\n%s", want, work)
		}
	}
	if changed, err := PointWorkspace(ctx, app, "/cache/gotch/A"); err != nil || changed {
		t.Errorf("same again: %v, changed=%v (want unchanged)", err, changed)
	}
	// An existing workspace keeps its other modules and replaces; the gotch replace is updated.
	writeTree(t, app, map[string]string{
		"lib/go.mod": "module example.com/lib\n\ngo 1.26\n",
		"go.work":    "go 1.26\n\nuse ./lib\n\nreplace example.com/x => ./x\nreplace github.com/sugarme/gotch v0.9.1 => /old\n",
	})
	if changed, err := PointWorkspace(ctx, app, "/cache/gotch/B"); err != nil || !changed {
		t.Fatalf("update: %v, changed=%v", err, changed)
	}
	work, _ = os.ReadFile(filepath.Join(app, "go.work"))
	for _, want := range []string{"./lib", "example.com/x => ./x", "github.com/sugarme/gotch v0.9.1 => /cache/gotch/B"} {
		if !strings.Contains(string(work), want) {
			t.Errorf("updated go.work lacks %q:\n%s", want, work)
		}
	}
	if strings.Contains(string(work), "/old") || !strings.Contains(string(work), "use (") && !strings.Contains(string(work), "use .") {
		t.Errorf("updated go.work:\n%s", work)
	}
	if _, err := PointWorkspace(ctx, t.TempDir(), "/x"); err == nil || !strings.Contains(err.Error(), "go mod init") {
		t.Errorf("no go.mod: err = %v", err)
	}

	// -mod: the replace goes into go.mod.
	mod := t.TempDir()
	writeTree(t, mod, map[string]string{"go.mod": "module example.com/app\n\ngo 1.26\n"})
	if changed, err := PointModule(ctx, mod, "/cache/gotch/A"); err != nil || !changed {
		t.Fatalf("PointModule: %v, changed=%v", err, changed)
	}
	gm, _ := os.ReadFile(filepath.Join(mod, "go.mod"))
	if !strings.Contains(string(gm), "replace github.com/sugarme/gotch v0.9.1 => /cache/gotch/A") {
		t.Errorf("go.mod:\n%s", gm)
	}
}

func TestBundleRefusesProgramsNotBuiltAgainstTheCache(t *testing.T) {
	exe, err := os.Executable() // this test binary: no $ORIGIN/lib in its run path
	if err != nil {
		t.Fatal(err)
	}
	_, err = Bundle(exe, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "$ORIGIN/lib") {
		t.Errorf("err = %v, want the run-path refusal", err)
	}
}

func TestRequirementDirectAndThroughCUDAToolkit(t *testing.T) {
	torch21 := "Requires-Dist: nvidia-cuda-runtime-cu12 ==12.1.105 ; platform_system == \"Linux\"\nRequires-Dist: nvidia-cuda-cupti-cu12 (==12.1.105)\n"
	if n, v, ok := requirement(torch21, "nvidia-cuda-runtime", ""); !ok || n != "nvidia-cuda-runtime-cu12" || v != "12.1.105" {
		t.Errorf("2.1 runtime: %s %s %v", n, v, ok)
	}
	if n, v, ok := requirement(torch21, "nvidia-cuda-cupti", ""); !ok || n != "nvidia-cuda-cupti-cu12" || v != "12.1.105" {
		t.Errorf("2.1 cupti: %s %s %v", n, v, ok)
	}
	torch215 := "Requires-Dist: cuda-toolkit[cublas,cudart,cupti]==13.2.2; platform_system == \"Linux\"\n"
	if _, _, ok := requirement(torch215, "nvidia-cuda-runtime", ""); ok {
		t.Errorf("2.15 pins no runtime directly")
	}
	if m := cudaToolkitPin.FindStringSubmatch(torch215); m == nil || m[2] != "13.2.2" {
		t.Errorf("cuda-toolkit pin: %q", m)
	}
	toolkit := "Requires-Dist: nvidia-cuda-runtime==13.2.86.*; (sys_platform == 'linux') and extra == 'all'\n" +
		"Requires-Dist: nvidia-cuda-cupti==13.2.80.*; (sys_platform == 'linux') and extra == 'cupti'\n" +
		"Requires-Dist: nvidia-cuda-runtime==13.2.85.*; (sys_platform == 'linux') and extra == 'cudart'\n"
	if n, v, ok := requirement(toolkit, "nvidia-cuda-runtime", "cudart"); !ok || n != "nvidia-cuda-runtime" || v != "13.2.85.*" {
		t.Errorf("toolkit cudart: %s %s %v (want the cudart extra's pin, not the 'all' one)", n, v, ok)
	}
	if _, v, ok := requirement(toolkit, "nvidia-cuda-cupti", "cupti"); !ok || v != "13.2.80.*" {
		t.Errorf("toolkit cupti: %s %v", v, ok)
	}
}

func TestVersionLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		less bool
	}{{"", "1", true}, {"13.2.86", "13.2.86.1", true}, {"13.2.9", "13.2.86", true}, {"13.2.86", "13.2.86", false}, {"2.0", "10.0", true}, {"1.0rc1", "1.0rc2", true}} {
		if got := versionLess(c.a, c.b); got != c.less {
			t.Errorf("versionLess(%q, %q) = %v", c.a, c.b, got)
		}
	}
}
