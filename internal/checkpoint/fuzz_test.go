package checkpoint

import (
	"testing"
)

// readAll exercises every read path of a checkpoint that opened, as a caller would.
func readAll(t *testing.T, c Checkpoint) {
	for i, name := range c.Names() {
		if i == 16 {
			break
		}
		if _, ok := c.Info(name); !ok {
			t.Fatalf("Info(%q) missing", name)
		}
		tn, err := c.Tensor(name)
		if err != nil {
			continue // e.g. a CRC mismatch, found lazily
		}
		if int64(len(tn.Data)) != tn.NumBytes() {
			t.Fatalf("%q: %d bytes for %s%v", name, len(tn.Data), tn.DType, tn.Shape)
		}
		if tn.NumElements() <= 1<<20 {
			tn.Float32()
			tn.Int64()
		}
	}
	c.Close()
}

func FuzzSafetensorsHeader(f *testing.F) {
	f.Add(stRaw([]byte(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`), f32Bytes(1, 2)))
	f.Add(stRaw([]byte(`{"__metadata__":{"k":"v"},"a":{"dtype":"BF16","shape":[],"data_offsets":[0,2]}}  `), []byte{1, 2}))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := parseSafetensors("fuzz", data)
		if err != nil {
			return
		}
		readAll(t, file)
	})
}

func FuzzTorchZip(f *testing.F) {
	f.Add(torchZip(f, tensorPickle(4, 0, []int64{2, 2}, []int64{1, 2}), map[string][]byte{"0": f32Bytes(1, 2, 3, 4)}))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := parseTorchZip("fuzz", data)
		if err != nil {
			return
		}
		readAll(t, file)
	})
}

func FuzzPickle(f *testing.F) {
	f.Add(tensorPickle(4, 0, []int64{2, 2}, []int64{2, 1}))
	f.Add(newPickle().global("os", "system").str("id").op(opTuple1, opReduce).bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		runPickle(data)
	})
}
