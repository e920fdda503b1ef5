package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tests of safetyd through real HTTP clients on 127.0.0.1: the server runs in-process (run) on a
// port the kernel picks.

var (
	parityDir  = filepath.Join("..", "..", "..", "shared", "parity")
	tinyModel  = filepath.Join("..", "..", "testdata", "golden", "models", "tiny_quickgelu")
	goldenImgs = filepath.Join("..", "..", "testdata", "golden", "images")
)

// syncBuffer is a bytes.Buffer safe for the server's logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is a running safetyd.
type testServer struct {
	url    string
	sigs   chan os.Signal
	code   chan int // run's exit code
	stderr *syncBuffer
}

var client = &http.Client{Timeout: 30 * time.Second}

// startServer runs safetyd with args (plus -addr 127.0.0.1:0), waits until /readyz answers 200 (at
// most 30 s) and stops it with SIGTERM when the test ends. onListen, when not nil, runs once the
// server listens and before the model starts loading.
func startServer(t *testing.T, onListen func(url string), args ...string) *testServer {
	t.Helper()
	s := &testServer{sigs: make(chan os.Signal, 1), code: make(chan int, 1), stderr: &syncBuffer{}}
	listening := make(chan string, 1)
	go func() {
		s.code <- run(append([]string{"-addr", "127.0.0.1:0", "-q"}, args...), s.stderr, s.sigs, func(addr string) {
			if onListen != nil {
				onListen("http://" + addr)
			}
			listening <- "http://" + addr
		})
	}()
	select {
	case s.url = <-listening:
	case code := <-s.code:
		t.Fatalf("safetyd exited with %d before listening:\n%s", code, s.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("safetyd did not listen within 30 s:\n%s", s.stderr)
	}
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(s.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("safetyd not ready within 30 s:\n%s", s.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends SIGTERM (once) and returns the exit code, waiting at most 30 s.
func (s *testServer) stop(t *testing.T) int {
	t.Helper()
	select {
	case s.sigs <- syscall.SIGTERM:
	default:
	}
	select {
	case code := <-s.code:
		s.code <- code // stop may be called again
		return code
	case <-time.After(30 * time.Second):
		t.Fatalf("safetyd did not stop within 30 s of SIGTERM:\n%s", s.stderr)
		return -1
	}
}

// reply is a response: status, headers and body.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the response: %v", req.Method, req.URL, err)
	}
	return reply{resp.StatusCode, resp.Header, body}
}

func newRequest(t *testing.T, method, url, contentType string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

func postImage(t *testing.T, url string, data []byte) reply {
	t.Helper()
	return do(t, newRequest(t, http.MethodPost, url+"/v1/check", "application/octet-stream", bytes.NewReader(data)))
}

// multipartBody encodes files (name → contents, in order) as a multipart/form-data body.
func multipartBody(t *testing.T, names []string, files [][]byte) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i, name := range names {
		w, err := mw.CreateFormFile(fmt.Sprintf("image%d", i), name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(files[i])
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), buf.Bytes()
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("test input: %v", err)
	}
	return b
}

// goodPNG is a small valid image.
func goodPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 40, 30))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bombPNG is a tiny PNG whose header declares w×h pixels: a decompression bomb as the header check
// sees it.
func bombPNG(t *testing.T, w, h uint32) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	// signature (8), IHDR length (4), "IHDR" (4), width, height, 5 more bytes, CRC over type+data.
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

type jsonRecord map[string]any

func decodeRecord(t *testing.T, body []byte) jsonRecord {
	t.Helper()
	var r jsonRecord
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("response %q: %v", body, err)
	}
	return r
}

func decodeRecords(t *testing.T, body []byte) []jsonRecord {
	t.Helper()
	var rs []jsonRecord
	if err := json.Unmarshal(body, &rs); err != nil {
		t.Fatalf("response %q: %v", body, err)
	}
	return rs
}

// TestParityThroughService posts the parity fixture's images and compares the answers with the
// safetycheck command's -json output and with the fixture's verdicts: all images in one multipart
// request (one batch, as the command runs them: equal field by field), and each image alone from
// concurrent clients (batched as they come: same verdicts, numbers within the batch tolerance).
func TestParityThroughService(t *testing.T) {
	model := filepath.Join(parityDir, "model")
	if _, err := os.Stat(model); err != nil {
		t.Skipf("parity fixture not present: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(parityDir, "images", "*"))
	sort.Strings(files)
	if len(files) == 0 {
		t.Skip("no parity images")
	}
	var names []string
	var data [][]byte
	for _, f := range files {
		names = append(names, filepath.Base(f))
		data = append(data, readFile(t, f))
	}
	expected := parityVerdicts(t)
	s := startServer(t, nil, "-model", model, "-batch", "8", "-batch-window", "20ms")

	ct, body := multipartBody(t, names, data)
	r := do(t, newRequest(t, http.MethodPost, s.url+"/v1/check", ct, bytes.NewReader(body)))
	if r.status != http.StatusOK {
		t.Fatalf("multipart: %d %s", r.status, r.body)
	}
	all := decodeRecords(t, r.body)
	if len(all) != len(files) {
		t.Fatalf("%d records for %d files", len(all), len(files))
	}
	for i, rec := range all {
		if rec["file"] != names[i] {
			t.Errorf("record %d is %v, want %s", i, rec["file"], names[i])
		}
		checkVerdict(t, rec, expected[names[i]])
	}

	// Each image alone, from concurrent clients.
	singles := make([]jsonRecord, len(files))
	var wg sync.WaitGroup
	for i := range files {
		wg.Go(func() {
			resp, err := client.Post(s.url+"/v1/check?file="+names[i], "image/png", bytes.NewReader(data[i]))
			if err != nil {
				t.Errorf("%s: %v", names[i], err)
				return
			}
			defer resp.Body.Close()
			if err := json.NewDecoder(resp.Body).Decode(&singles[i]); err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("%s: status %d, %v", names[i], resp.StatusCode, err)
			}
		})
	}
	wg.Wait()
	for i, rec := range singles {
		if rec == nil {
			continue
		}
		checkVerdict(t, rec, expected[names[i]])
		if d := maxDiff(rec["image_embeds"], all[i]["image_embeds"]); d > 1e-5 {
			t.Errorf("%s alone: image_embeds differ from the batch of %d by %.2e", names[i], len(files), d)
		}
		if d := maxDiff(rec["concept_scores"], all[i]["concept_scores"]); d > 0.0011 {
			t.Errorf("%s alone: concept_scores differ by %.4f", names[i], d)
		}
	}

	if testing.Short() {
		return
	}
	cmd := commandOutput(t, model, filepath.Join(parityDir, "images"))
	if len(cmd) != len(all) {
		t.Fatalf("safetycheck gave %d records, the service %d", len(cmd), len(all))
	}
	for i := range cmd {
		cmd[i]["file"] = filepath.Base(cmd[i]["file"].(string))
		want, _ := json.Marshal(cmd[i])
		got, _ := json.Marshal(all[i])
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the service's record differs from safetycheck's:\n got %.300s\nwant %.300s", names[i], got, want)
		}
	}
}

// parityVerdicts reads the fixture's expected verdicts by file name.
func parityVerdicts(t *testing.T) map[string]jsonRecord {
	t.Helper()
	var exp struct {
		Images []jsonRecord `json:"images"`
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(parityDir, "expected", "expected.json")), &exp); err != nil {
		t.Fatal(err)
	}
	out := map[string]jsonRecord{}
	for _, e := range exp.Images {
		out[e["file"].(string)] = e
	}
	return out
}

// checkVerdict compares a record with the fixture's answer: verdict, special care, the concepts hit.
func checkVerdict(t *testing.T, got, want jsonRecord) {
	t.Helper()
	if want == nil {
		t.Errorf("%v: not in the fixture", got["file"])
		return
	}
	specialWant := len(want["special_care"].([]any)) > 0
	if got["nsfw"] != want["nsfw"] || got["special_care"] != specialWant ||
		fmt.Sprint(got["bad_concepts"]) != fmt.Sprint(want["bad_concepts"]) {
		t.Errorf("%v: nsfw %v special %v bad %v; the reference says %v %v %v", got["file"], got["nsfw"],
			got["special_care"], got["bad_concepts"], want["nsfw"], specialWant, want["bad_concepts"])
	}
	if d := maxDiff(got["concept_scores"], want["concept_scores"]); d > 0.0011 {
		t.Errorf("%v: concept_scores differ from the reference by %.4f", got["file"], d)
	}
}

// maxDiff is the largest absolute difference of two JSON number arrays (+Inf when they differ in
// length or type).
func maxDiff(a, b any) float64 {
	x, okx := a.([]any)
	y, oky := b.([]any)
	if !okx || !oky || len(x) != len(y) || len(x) == 0 {
		return 1e308
	}
	d := 0.0
	for i := range x {
		u, _ := x[i].(float64)
		v, _ := y[i].(float64)
		d = max(d, u-v, v-u)
	}
	return d
}

// commandOutput builds examples/safetycheck and returns its -json records for dir.
func commandOutput(t *testing.T, model, dir string) []jsonRecord {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "safetycheck")
	build := exec.Command("go", "build", "-o", bin, "github.com/sdsafety/safety/examples/safetycheck")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build safetycheck: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-q", "-json", "-model", model, dir).Output()
	if err != nil {
		t.Fatalf("safetycheck: %v", err)
	}
	var recs []jsonRecord
	for line := range strings.Lines(string(out)) {
		recs = append(recs, decodeRecord(t, []byte(line)))
	}
	return recs
}

// TestBadInputs sends inputs that cannot be checked: each gets its 4xx status and {"error": ...}
// (never a verdict), and the server keeps serving.
func TestBadInputs(t *testing.T) {
	needTinyModel(t)
	s := startServer(t, nil, "-model", tinyModel, "-max-body", "300000", "-max-images", "3")
	good := goodPNG(t)
	big := make([]byte, 400_000)
	copy(big, good)
	mp := func(names []string, files ...[]byte) (string, io.Reader) {
		ct, body := multipartBody(t, names, files)
		return ct, bytes.NewReader(body)
	}
	for _, tc := range []struct {
		name   string
		method string
		ct     string
		body   func() (string, io.Reader)
		status int
	}{
		{"not an image", "POST", "", func() (string, io.Reader) { return "", strings.NewReader("hello, world") }, 415},
		{"truncated PNG", "POST", "", func() (string, io.Reader) { return "", bytes.NewReader(good[:len(good)/2]) }, 400},
		{"decompression bomb", "POST", "", func() (string, io.Reader) { return "", bytes.NewReader(bombPNG(t, 50000, 50000)) }, 413},
		{"body over the size limit", "POST", "", func() (string, io.Reader) { return "", bytes.NewReader(big) }, 413},
		{"empty body", "POST", "", func() (string, io.Reader) { return "", strings.NewReader("") }, 400},
		{"GET", "GET", "", func() (string, io.Reader) { return "", nil }, 405},
		{"PUT", "PUT", "", func() (string, io.Reader) { return "", bytes.NewReader(good) }, 405},
		{"multipart: one bad file among good ones", "POST", "", func() (string, io.Reader) {
			return mp([]string{"a.png", "b.png", "c.png"}, good, []byte("not an image"), good)
		}, 415},
		{"multipart: too many files", "POST", "", func() (string, io.Reader) {
			return mp([]string{"a", "b", "c", "d"}, good, good, good, good)
		}, 413},
		{"multipart: over the size limit", "POST", "", func() (string, io.Reader) { return mp([]string{"a"}, big) }, 413},
		{"multipart: no boundary", "POST", "multipart/form-data", func() (string, io.Reader) { return "", bytes.NewReader(good) }, 400},
		{"multipart: no files", "POST", "", func() (string, io.Reader) {
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			mw.WriteField("comment", "no image here")
			mw.Close()
			return mw.FormDataContentType(), &buf
		}, 400},
		{"multipart: truncated", "POST", "", func() (string, io.Reader) {
			ct, body := multipartBody(t, []string{"a.png"}, [][]byte{good})
			return ct, bytes.NewReader(body[:len(body)-20])
		}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct, body := tc.body()
			if tc.ct != "" {
				ct = tc.ct
			}
			r := do(t, newRequest(t, tc.method, s.url+"/v1/check", ct, body))
			if r.status != tc.status {
				t.Errorf("status %d, want %d (%s)", r.status, tc.status, r.body)
			}
			rec := decodeRecord(t, r.body)
			if _, ok := rec["error"].(string); !ok || len(rec) != 1 {
				t.Errorf("body %s, want only {\"error\": ...}", r.body)
			}
			if tc.status == 405 && r.header.Get("Allow") != "POST" {
				t.Errorf("405 without Allow: POST")
			}
			// The server keeps serving.
			if r := postImage(t, s.url, good); r.status != http.StatusOK {
				t.Fatalf("a good image after the bad input: %d %s", r.status, r.body)
			}
		})
	}
}

func needTinyModel(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(tinyModel, "config.json")); err != nil {
		t.Skipf("tiny golden model not present: %v", err)
	}
}

// slowUpload starts a POST whose body is still being written: the request is admitted and waits
// for the rest of its body. finish writes the rest and returns the reply.
func slowUpload(t *testing.T, url string, data []byte) (finish func() reply) {
	t.Helper()
	pr, pw := io.Pipe()
	replies := make(chan reply, 1)
	errs := make(chan error, 1)
	go func() {
		resp, err := client.Do(newRequest(t, http.MethodPost, url+"/v1/check", "image/png", pr))
		if err != nil {
			errs <- err
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			errs <- err
			return
		}
		replies <- reply{resp.StatusCode, resp.Header, body}
	}()
	if _, err := pw.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	return func() reply {
		t.Helper()
		pw.Write(data[len(data)/2:])
		pw.Close()
		select {
		case r := <-replies:
			return r
		case err := <-errs:
			t.Fatalf("slow upload: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("slow upload: no reply within 30 s")
		}
		return reply{}
	}
}

var metricLine = regexp.MustCompile(`(?m)^(\w+(?:\{[^}]*\})?) (\S+)$`)

// metricsOf scrapes /metrics: sample name (with labels) → value.
func metricsOf(t *testing.T, url string) map[string]float64 {
	t.Helper()
	r := do(t, newRequest(t, http.MethodGet, url+"/metrics", "", nil))
	if r.status != http.StatusOK {
		t.Fatalf("/metrics: %d", r.status)
	}
	out := map[string]float64{}
	for _, m := range metricLine.FindAllStringSubmatch(string(r.body), -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err == nil {
			out[m[1]] = v
		}
	}
	return out
}

// waitQueue waits until safetyd_queue_depth is n (at most 10 s).
func waitQueue(t *testing.T, url string, n float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for metricsOf(t, url)["safetyd_queue_depth"] != n {
		if time.Now().After(deadline) {
			t.Fatalf("queue depth did not reach %v within 10 s", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestOverload fills the queue: the next request gets 429 with Retry-After, the admitted one its
// answer, and a burst of clients only 200s and 429s.
func TestOverload(t *testing.T) {
	needTinyModel(t)
	s := startServer(t, nil, "-model", tinyModel, "-queue", "1", "-retry-after", "2s")
	good := goodPNG(t)
	finish := slowUpload(t, s.url, good)
	waitQueue(t, s.url, 1)
	r := postImage(t, s.url, good)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "2" {
		t.Errorf("request over the queue: %d, Retry-After %q; want 429, 2", r.status, r.header.Get("Retry-After"))
	}
	if r := finish(); r.status != http.StatusOK {
		t.Errorf("the admitted request: %d %s", r.status, r.body)
	}
	// A burst: 32 clients, 4 requests each.
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for range 4 {
				resp, err := client.Post(s.url+"/v1/check", "image/png", bytes.NewReader(good))
				if err != nil {
					t.Errorf("burst: %v", err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				statuses[resp.StatusCode]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if statuses[200]+statuses[429] != 128 || statuses[200] == 0 {
		t.Errorf("burst statuses %v, want only 200 and 429 (some 200)", statuses)
	}
	m := metricsOf(t, s.url)
	if m[`safetyd_requests_total{code="429"}`] != float64(statuses[429]+1) || m["safetyd_rejected_total"] != float64(statuses[429]+1) {
		t.Errorf("metrics count %v 429s (rejected %v), the clients saw %d", m[`safetyd_requests_total{code="429"}`],
			m["safetyd_rejected_total"], statuses[429]+1)
	}
	if r := postImage(t, s.url, good); r.status != http.StatusOK {
		t.Errorf("after the burst: %d", r.status)
	}
}

// TestSlowUpload: a body that does not arrive within -timeout gets 408 and frees its place in the
// queue.
func TestSlowUpload(t *testing.T) {
	needTinyModel(t)
	s := startServer(t, nil, "-model", tinyModel, "-timeout", "500ms", "-queue", "1")
	good := goodPNG(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	pw2 := make(chan struct{})
	go func() { // half the image, then nothing
		pw.Write(good[:len(good)/2])
		close(pw2)
	}()
	start := time.Now()
	r := do(t, newRequest(t, http.MethodPost, s.url+"/v1/check", "image/png", pr))
	<-pw2
	if r.status != http.StatusRequestTimeout || time.Since(start) > 10*time.Second {
		t.Errorf("stalled upload: %d after %v (%s), want 408 after about 500ms", r.status, time.Since(start), r.body)
	}
	waitQueue(t, s.url, 0)
	if r := postImage(t, s.url, good); r.status != http.StatusOK {
		t.Errorf("after the stalled upload: %d %s", r.status, r.body)
	}
}

// TestSIGTERMDrains sends the process a real SIGTERM while a request is in flight: the server stops
// taking connections, finishes the request and exits 0.
func TestSIGTERMDrains(t *testing.T) {
	needTinyModel(t)
	s := startServer(t, nil, "-model", tinyModel)
	signal.Notify(s.sigs, syscall.SIGTERM)
	defer signal.Stop(s.sigs)
	good := goodPNG(t)
	finish := slowUpload(t, s.url, good)
	waitQueue(t, s.url, 1)
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused once the listener is closed.
	addr := strings.TrimPrefix(s.url, "http://")
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections 10 s after SIGTERM")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case code := <-s.code:
		t.Fatalf("exited with %d while a request was in flight", code)
	case <-time.After(100 * time.Millisecond):
	}
	r := finish()
	if r.status != http.StatusOK || decodeRecord(t, r.body)["nsfw"] == nil {
		t.Errorf("in-flight request during the drain: %d %s", r.status, r.body)
	}
	if code := s.stop(t); code != exitOK {
		t.Errorf("exit code %d after the drain, want 0:\n%s", code, s.stderr)
	}
}

// TestReadiness: /healthz answers at once, /readyz and /v1/check 503 until the model is loaded; a
// model that does not load stops the server with status 1.
func TestReadiness(t *testing.T) {
	needTinyModel(t)
	type probe struct {
		path   string
		status int
	}
	var before []probe
	s := startServer(t, func(url string) {
		for _, p := range []string{"/healthz", "/readyz", "/v1/check"} {
			method := http.MethodGet
			if p == "/v1/check" {
				method = http.MethodPost
			}
			r := do(t, newRequest(t, method, url+p, "image/png", bytes.NewReader(goodPNG(t))))
			before = append(before, probe{p, r.status})
		}
	}, "-model", tinyModel)
	if want := []probe{{"/healthz", 200}, {"/readyz", 503}, {"/v1/check", 503}}; !slices.Equal(before, want) {
		t.Errorf("before the model loaded: %v, want %v", before, want)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := do(t, newRequest(t, http.MethodGet, s.url+p, "", nil)); r.status != http.StatusOK {
			t.Errorf("%s once loaded: %d", p, r.status)
		}
	}
	if m := metricsOf(t, s.url); m["safetyd_ready"] != 1 {
		t.Errorf("safetyd_ready %v once loaded, want 1", m["safetyd_ready"])
	}

	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"-addr", "127.0.0.1:0", "-model", t.TempDir()}, &stderr, make(chan os.Signal), nil)
	}()
	select {
	case code := <-done:
		if code != exitError || !strings.Contains(stderr.String(), "load") {
			t.Errorf("unloadable model: exit %d, want 1:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("an unloadable model did not stop the server within 30 s")
	}
}

// TestBearerToken: with -token-file, POST /v1/check needs the token; the probes and metrics do not.
func TestBearerToken(t *testing.T) {
	needTinyModel(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, nil, "-model", tinyModel, "-token-file", tokenFile)
	good := goodPNG(t)
	for _, tc := range []struct {
		auth   string
		status int
	}{
		{"", 401}, {"Bearer wrong", 401}, {"s3cret", 401}, {"Bearer s3cret", 200},
	} {
		req := newRequest(t, http.MethodPost, s.url+"/v1/check", "image/png", bytes.NewReader(good))
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		if r := do(t, req); r.status != tc.status {
			t.Errorf("Authorization %q: %d, want %d", tc.auth, r.status, tc.status)
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := do(t, newRequest(t, http.MethodGet, s.url+p, "", nil)); r.status != http.StatusOK {
			t.Errorf("%s without a token: %d", p, r.status)
		}
	}
}

// TestMetrics checks the counters after known traffic.
func TestMetrics(t *testing.T) {
	needTinyModel(t)
	s := startServer(t, nil, "-model", tinyModel)
	imgs, _ := filepath.Glob(filepath.Join(goldenImgs, "*.png"))
	if len(imgs) < 3 {
		t.Skip("golden images missing")
	}
	flagged := 0
	for _, f := range imgs[:3] {
		r := postImage(t, s.url, readFile(t, f))
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", f, r.status, r.body)
		}
		if decodeRecord(t, r.body)["nsfw"] == true {
			flagged++
		}
	}
	postImage(t, s.url, []byte("junk"))
	m := metricsOf(t, s.url)
	for name, want := range map[string]float64{
		`safetyd_requests_total{code="200"}`:     3,
		`safetyd_requests_total{code="415"}`:     1,
		"safetyd_request_duration_seconds_count": 4,
		"safetyd_images_checked_total":           3,
		"safetyd_images_flagged_total":           float64(flagged),
		"safetyd_batch_size_count":               3,
		"safetyd_batch_size_sum":                 3,
		"safetyd_queue_depth":                    0,
		"safetyd_queue_capacity":                 64,
	} {
		if got, ok := m[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
}

// TestMappedFlag: by default the model's float32 weights are mapped; -mapped=false copies them (the
// load log line says which).
func TestMappedFlag(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		mapped bool
	}{
		{nil, true},
		{[]string{"-mapped=false"}, false},
	} {
		s := startServer(t, nil, append([]string{"-model", tinyModel}, tc.args...)...)
		log := s.stderr.String()
		s.stop(t)
		m := regexp.MustCompile(`weights: (\d+) bytes mapped, (\d+) bytes copied`).FindStringSubmatch(log)
		if m == nil {
			t.Fatalf("%q: no weights line in the log:\n%s", tc.args, log)
		}
		if mapped := m[1] != "0" && m[2] == "0"; mapped != tc.mapped {
			t.Errorf("%q: %s bytes mapped, %s copied; want mapped=%v", tc.args, m[1], m[2], tc.mapped)
		}
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"-h"}, exitOK},
		{[]string{"-batch", "0"}, exitUsage},
		{[]string{"-queue", "0"}, exitUsage},
		{[]string{"-retry-after", "10ms"}, exitUsage},
		{[]string{"-nosuchflag"}, exitUsage},
		{[]string{"extra"}, exitUsage},
		{[]string{"-token-file", "/nonexistent/token"}, exitUsage},
		{[]string{"-batch-window", "-1s", "-model", tinyModel, "-addr", "127.0.0.1:0"}, exitUsage},
	} {
		var stderr syncBuffer
		done := make(chan int, 1)
		go func() { done <- run(tc.args, &stderr, make(chan os.Signal), nil) }()
		select {
		case code := <-done:
			if code != tc.code {
				t.Errorf("%q: exit %d, want %d\n%s", tc.args, code, tc.code, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%q: no exit within 30 s", tc.args)
		}
	}
}
