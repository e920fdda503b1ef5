package checkpoint

import (
	"archive/zip"
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// TestTorchDeflateBomb covers issue 13 item 3: a storage record that inflates to far more than its
// tensors need is refused, or inflated only as far as the views reach.
func TestTorchDeflateBomb(t *testing.T) {
	const big = 64 << 20 // bytes a bomb inflates to; about 64 KB compressed
	zeros := make([]byte, big)
	copy(zeros[big-16:], f32Bytes(1, 2, 3, 4)) // the last four floats of the big storage

	t.Run("record larger than its storage", func(t *testing.T) {
		// The storage declares 4 floats (16 bytes); its deflated record inflates to 64 MiB.
		arch := buildZip(t,
			zrec("archive/data.pkl", tensorPickle(4, 0, []int64{4}, []int64{1}), zip.Store),
			zrec("archive/data/0", zeros, zip.Deflate),
		)
		if len(arch) > 1<<20 {
			t.Fatalf("the bomb is %d bytes, want a small file", len(arch))
		}
		_, err := OpenTorch(writeTemp(t, "bomb.bin", arch))
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "exactly") {
			t.Fatalf("OpenTorch = %v, want ErrFormat: the record is not numel × itemsize bytes", err)
		}
	})

	for _, tc := range []struct {
		name   string
		offset int64
		want   []float32
	}{
		{"small view at the start of a big storage", 0, []float32{0, 0}},
		{"small view at the end of a big storage", big/4 - 2, []float32{3, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The storage really is 64 MiB (16 Mi floats), deflated; the only tensor views 2 of them.
			arch := buildZip(t,
				zrec("archive/data.pkl", tensorPickle(big/4, tc.offset, []int64{2}, []int64{1}), zip.Store),
				zrec("archive/data/0", zeros, zip.Deflate),
			)
			f, err := OpenTorch(writeTemp(t, "bomb.bin", arch))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			tn, err := f.Tensor("w")
			runtime.ReadMemStats(&m1)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustFloat32(t, tn); !slices.Equal(got, tc.want) {
				t.Errorf("w = %v, want %v", got, tc.want)
			}
			if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc > 4<<20 {
				t.Errorf("reading a 2-element view of a deflated 64 MiB storage allocated %d bytes, want < 4 MiB", alloc)
			}
		})
	}
}
