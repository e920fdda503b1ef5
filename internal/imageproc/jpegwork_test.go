package imageproc

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// progressiveDCOnly returns a 256×256 grey progressive JPEG: a DC first scan then refines DC refine
// scans, each walking all 1024 blocks with one zero bit a block (128 bytes).
func progressiveDCOnly(refines int) []byte {
	var b bytes.Buffer
	seg := func(marker byte, body []byte) {
		b.Write([]byte{0xff, marker, byte((len(body) + 2) >> 8), byte(len(body) + 2)})
		b.Write(body)
	}
	b.Write([]byte{0xff, 0xd8})
	seg(0xdb, append([]byte{0}, bytes.Repeat([]byte{1}, 64)...))       // DQT 0: all ones
	seg(0xc2, []byte{8, 1, 0, 1, 0, 1, 1, 0x11, 0})                    // SOF2 256x256, 1 component
	seg(0xc4, append([]byte{0x00, 1}, append(make([]byte, 15), 0)...)) // DHT DC 0: "0" → category 0
	scan := func(ahal byte) {
		seg(0xda, []byte{1, 1, 0x00, 0, 0, ahal})
		b.Write(make([]byte, 128))
	}
	scan(0x01) // DC first, al 1
	for range refines {
		scan(0x10) // DC refine, ah 1 al 0
	}
	b.Write([]byte{0xff, 0xd9})
	return b.Bytes()
}

// TestJPEGScanWorkBounded covers issue 13 item 10 (decode work): a small progressive JPEG whose scans
// walk every block far more often than any encoder's script is refused (ErrTooLarge) before the
// excess scans run; one with an ordinary number of scans decodes.
func TestJPEGScanWorkBounded(t *testing.T) {
	ok, err := Decode(progressiveDCOnly(10), nil)
	if err != nil || ok.Width != 256 || ok.Height != 256 {
		t.Fatalf("11 scans: %v, %v; want a 256x256 image", ok, err)
	}
	data := progressiveDCOnly(100) // 101 passes over the blocks, under the 500-scan limit
	start := time.Now()
	_, err = Decode(data, nil)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("101 scans over every block (%d bytes): %v, want ErrTooLarge", len(data), err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusing took %v", d)
	}
}
