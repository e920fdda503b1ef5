package imageproc

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

// Pillow 13's Image.resize on ((i·97+13) mod 256) test images, for every filter, upscaling,
// downscaling, single-pass and vertical-first cases.
var pillowResizeVectors = []struct {
	w, h, ow, oh int
	f            Filter
	want         string
}{
	{7, 5, 3, 4, 3, "1f86b775d137c452863d79c164c348b73e75716ad751bd69a97c625e5cc744b5589ca055"},
	{5, 9, 12, 7, 3, "3450bf3a55c64b62df5a74e74f88ad3c9d583baf3a4bbd515dcc626edd547bea4381f03da0684ca76e51bd835ec78f709e70876141a04d33b65f43cd7559cc867098938362998c4d2b9b9f30a1a63db4bd4fc1c763ae95798f4b8b8b3199a643a8a75bba6873c92787d00d90aa4387b1498fca58a3d268b8986cb9446db42676bd3b87d84f94d54e998b4b9a404a9b2352c27a57c96f64e05276ea388ab83da06e53b55667ce6e7dca7b918b63a34a47b0303cb5854cd08c53c0a26496ac7a6f838e7846a39132b67f43cc425acd1975a6238d7c39976c409dcc4fa3ae58b4636bc31983b81496a52ea5a740a4c34e91c15e867776952c89a60e92ac"},
	{9, 20, 8, 6, 3, "658e647a777e83876a8b77818d7995847f8d5a899f6ea8809a799a768674718c67899a7e8f6e806c7e71897287728b70826c846b85718778877f827d83898886877380607ba07a95789a7891737e896c8a99849871896b806c7e6f897b8a6d8c788168816c857585787d7c838483878380826b7c987b9b818e869c699768718e5a9a98729a618668717a7d7a8a66986b"},
	{6, 4, 6, 9, 2, "0d6ecf3091f253b41576d73899fa5bbc1d7e3066c72889ea4bac386ecf3091f253b440768d52b31475d63798955abb1c7dde3fa09d62dc3d9e0e60c13183e445a61668c9398bec4dc8298a6b4cad8e6fd031927354b59677d839b41576c83899eb5bbc1d7ed040a1f363c4259f6461c22384e546a76c69ca2b8ced4eaf748bc14dae0f70d13293c955b61778d93a9bd183e445a60768c92a8bec4dae0f70d13293f4"},
	{10, 3, 4, 3, 1, "258db189cf36a048aa248a938aae45cc33a945a7c0879044ab42b930a697a4bd428d41b0"},
	{8, 8, 5, 5, 4, "2b8cad5fc02194b556c8298a7d5ebf4fb09183e445b8197aec4dae2182e373d435a78869dc3d9e1071d245a647977859cb2c8d8061c23495f669ca2bbb5c7def50b12485a658b91a8dae4f"},
	{8, 8, 3, 3, 5, "43a37a9e88608c5bb981b64cb64c9d409775bc59814f7ba574bb44"},
	{4, 6, 11, 13, 6, "004edd0056eb006dff0d8fff1babf626bb8335c50f51d30073e2008aeb1891f1261b7eb42182c22a7edc3a7af34b7de05d8a8d689a376cac1b67bb3163c44667ca5370db6776d8747fa08c9052aba726b5c52c9eca49839f6181517192197aa01880a890ff5b96ff5e9fb75db04c61c90f6deb1382ee3498b44ead4f5fbb0768c3066ec947d1c44dd1b256b17c658531796f138f7822998f478ca46471b4735cbd7b62c3801f78ff257ee62e899a3d9c2f4dad005bbb0068c81d78da3986ed498ff95294ff586424b96a2bac733e8c835c5f98744eac8155b28d69a2a57e76c38e55d69748de9da9016daf0872b8147bc82789e43999ff47a7ff54b4d265c46778d31b83dc0089e2813e9e8644a58e4d909d5d75ba7268de8a73ed9288d07c9c8550ab4f30b43b2fba3893f93e99fa46a2b254b34d69cd1380ef1794f238a0b551a44a62a3006ba600715981e76187e86f90b080a0627eb83764d63d4ddb5a55af717561828d298b9a2491ae3799bb3d9ed0469ae65595ca67997578a52184b60c87c72583d73f7fe04d82e6db1070e91677ff1f8eff2eb0f23ccc7f47dc0b56e60072f40094ff16abff24b3ff"},
	{13, 7, 5, 9, 7, "2094aa93c9378d43b72cab6c9b9b458362c15cc477b2447a5675b461b952c854ad2d97b09c8d34a93dc549aa71b27c6d5555b851cf44d05a836c6f9784a03fbd32a6379ea79bc4469147ad4db94eb97764955cbe5bca2ab2417f4699a97ba74bc624a42da17c96a53c8e58ce53a862ad4b676162c15ad356dd30a25a997d86a235c137b5389cae"},
}

func TestResizeMatchesPillow(t *testing.T) {
	for _, v := range pillowResizeVectors {
		src := &RGB{Width: v.w, Height: v.h, Pix: make([]uint8, v.w*v.h*3)}
		for i := range src.Pix {
			src.Pix[i] = uint8((i*97 + 13) % 256)
		}
		got, err := Resize(src, v.ow, v.oh, v.f)
		if err != nil {
			t.Fatal(err)
		}
		if h := hex.EncodeToString(got.Pix); h != v.want {
			t.Errorf("%dx%d -> %dx%d %v:\n got %s\nwant %s", v.w, v.h, v.ow, v.oh, v.f, h, v.want)
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
