package imageproc

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"testing"
)

// pattern returns a deterministic w×h test image mixing smooth gradients, hard edges, noise and a
// partially transparent region, so that every stage (resampling overshoot, chroma, alpha) is hit.
func pattern(w, h int, seed uint64) *image.NRGBA {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := m.PixOffset(x, y)
			fx, fy := float64(x)/float64(max(w-1, 1)), float64(y)/float64(max(h-1, 1))
			var c [3]float64
			c[0] = 255 * fx
			c[1] = 255 * fy
			c[2] = 255 * (1 - fx) * fy
			if (x/7+y/5)%4 == 0 { // hard edges
				c[0], c[1] = 255-c[0], 0
			}
			for k := range c {
				c[k] += float64(r.IntN(41) - 20) // noise
				m.Pix[i+k] = uint8(max(0, min(255, c[k])))
			}
			m.Pix[i+3] = 255
			if x > w/2 && y > h/2 {
				m.Pix[i+3] = uint8(r.IntN(256)) // translucent corner with arbitrary stored colour
			}
		}
	}
	return m
}

// randomRGB returns random packed RGB content: noise, or smooth data when smooth is true.
func randomRGB(r *rand.Rand, w, h int, smooth bool) *RGB {
	img := &RGB{Width: w, Height: h, Pix: make([]uint8, w*h*3)}
	if !smooth {
		for i := range img.Pix {
			img.Pix[i] = uint8(r.UintN(256))
		}
		return img
	}
	a, b := r.Float64()*0.2, r.Float64()*0.2
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for c := 0; c < 3; c++ {
				v := 128 + 120*math.Sin(a*float64(x)+b*float64(y)+float64(c))
				img.Pix[(y*w+x)*3+c] = uint8(v)
			}
		}
	}
	return img
}

// colourModels converts an NRGBA source into every image type FromImage has a path for.
func colourModels(src *image.NRGBA) map[string]image.Image {
	b := src.Bounds()
	out := map[string]image.Image{"NRGBA": src}
	rgba := image.NewRGBA(b)
	gray := image.NewGray(b)
	gray16 := image.NewGray16(b)
	nrgba64 := image.NewNRGBA64(b)
	rgba64 := image.NewRGBA64(b)
	cmyk := image.NewCMYK(b)
	pal := make(color.Palette, 0, 256)
	for i := 0; i < 252; i++ {
		pal = append(pal, color.NRGBA{uint8(i * 37), uint8(i * 91), uint8(i), uint8(255 - i%3*100)})
	}
	paletted := image.NewPaletted(b, pal)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := src.NRGBAAt(x, y)
			rgba.Set(x, y, c)
			gray.SetGray(x, y, color.Gray{c.G})
			gray16.SetGray16(x, y, color.Gray16{uint16(c.R)<<8 | uint16(c.G)})
			nrgba64.SetNRGBA64(x, y, color.NRGBA64{uint16(c.R)<<8 | uint16(c.B), uint16(c.G) << 8, uint16(c.B)<<8 | 0xff, uint16(c.A)<<8 | uint16(c.R)})
			rgba64.Set(x, y, c)
			cmyk.SetCMYK(x, y, color.CMYK{c.R, c.G, c.B, c.A})
			paletted.SetColorIndex(x, y, uint8((int(c.R)+int(c.G)*3)%len(pal)))
		}
	}
	out["RGBA"] = rgba
	out["Gray"] = gray
	out["Gray16"] = gray16
	out["NRGBA64"] = nrgba64
	out["RGBA64"] = rgba64
	out["CMYK"] = cmyk
	out["Paletted"] = paletted
	return out
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
