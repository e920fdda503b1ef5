package imageproc

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// pillowResizeVector is one entry of testdata/pillow_resize_vectors.json (reference/make_test_vectors.py):
// Pillow's Image.resize of a w×h RGB image whose byte i is (i·97 + 13) mod 256, for every filter,
// upscaling, downscaling, single-pass and vertical-first cases.
type pillowResizeVector struct {
	W       int    `json:"w"`
	H       int    `json:"h"`
	OW      int    `json:"ow"`
	OH      int    `json:"oh"`
	Filter  Filter `json:"filter"`
	WantHex string `json:"want_hex"`
}

func readPillowResizeVectors(t *testing.T) []pillowResizeVector {
	t.Helper()
	path := filepath.Join("testdata", "pillow_resize_vectors.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Vectors []pillowResizeVector `json:"vectors"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(doc.Vectors) == 0 {
		t.Fatalf("%s: no vectors", path)
	}
	return doc.Vectors
}

func TestResizeMatchesPillow(t *testing.T) {
	filters := map[Filter]bool{}
	for _, v := range readPillowResizeVectors(t) {
		filters[v.Filter] = true
		src := &RGB{Width: v.W, Height: v.H, Pix: make([]uint8, v.W*v.H*3)}
		for i := range src.Pix {
			src.Pix[i] = uint8((i*97 + 13) % 256)
		}
		got, err := Resize(src, v.OW, v.OH, v.Filter)
		if err != nil {
			t.Fatal(err)
		}
		if h := hex.EncodeToString(got.Pix); h != v.WantHex {
			t.Errorf("%dx%d -> %dx%d %v:\n got %s\nwant %s", v.W, v.H, v.OW, v.OH, v.Filter, h, v.WantHex)
		}
	}
	for _, f := range []Filter{Lanczos, Bilinear, Bicubic, Box, Hamming, MKS2013, MKS2021} {
		if !filters[f] {
			t.Errorf("no Pillow vector for filter %v", f)
		}
	}
}

func TestResizeEdgeCases(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	src := randomRGB(r, 17, 11, false)
	same, err := Resize(src, 17, 11, Bicubic)
	if err != nil || !bytes.Equal(same.Pix, src.Pix) {
		t.Fatalf("same-size resize must copy: %v", err)
	}
	same.Pix[0]++
	if same.Pix[0] == src.Pix[0] {
		t.Fatal("same-size resize aliases the source")
	}
	for _, sz := range [][2]int{{1, 1}, {1, 40}, {40, 1}, {500, 3}} {
		out, err := ResizeBicubic(src, sz[0], sz[1])
		if err != nil || out.Width != sz[0] || out.Height != sz[1] || len(out.Pix) != sz[0]*sz[1]*3 {
			t.Errorf("resize to %v: %v", sz, err)
		}
	}
	if _, err := Resize(src, 0, 5, Bicubic); err == nil {
		t.Error("zero width accepted")
	}
	if _, err := Resize(src, 5, 5, Nearest); err == nil {
		t.Error("NEAREST accepted")
	}
	if _, err := Resize(&RGB{Width: 2, Height: 2, Pix: make([]uint8, 5)}, 5, 5, Bicubic); err == nil {
		t.Error("inconsistent RGB accepted")
	}
	if _, err := Resize(nil, 5, 5, Bicubic); err == nil {
		t.Error("nil image accepted")
	}
}

// TestResizeRegionMatchesFull: computing a crop of the resize directly (what Preprocess does) gives
// the same bytes as cropping the full resize, in both pass orders.
func TestResizeRegionMatchesFull(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 40; i++ {
		src := randomRGB(r, 1+r.IntN(120), 1+r.IntN(120), i%2 == 0)
		ow, oh := 1+r.IntN(120), 1+r.IntN(120)
		full, err := Resize(src, ow, oh, Bicubic)
		if err != nil {
			t.Fatal(err)
		}
		x0, y0 := r.IntN(ow), r.IntN(oh)
		w, h := 1+r.IntN(ow-x0), 1+r.IntN(oh-y0)
		reg := &RGB{Width: w, Height: h, Pix: make([]uint8, w*h*3)}
		if err := resizeRegion(src, ow, oh, Bicubic, x0, y0, reg, 1+r.IntN(3)); err != nil {
			t.Fatal(err)
		}
		for y := 0; y < h; y++ {
			want := full.Pix[((y0+y)*ow+x0)*3 : ((y0+y)*ow+x0+w)*3]
			if !bytes.Equal(reg.Pix[y*w*3:(y+1)*w*3], want) {
				t.Fatalf("case %d: %dx%d -> %dx%d region (%d,%d) %dx%d row %d differs", i, src.Width, src.Height, ow, oh, x0, y0, w, h, y)
			}
		}
	}
}

func BenchmarkResize512To224(b *testing.B) {
	src := randomRGB(rand.New(rand.NewPCG(1, 1)), 512, 512, true)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ResizeBicubic(src, 224, 224); err != nil {
			b.Fatal(err)
		}
	}
}
