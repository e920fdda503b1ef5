package clip

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/sdsafety/safety/internal/checkpoint"
	"github.com/sdsafety/safety/internal/testbuild"
)

// TestCopyCheckedTruncated covers issue 13 item 6: a checkpoint truncated after it was mapped (a new
// file copied over the old one in place) gives an ErrCheckpoint error naming the memory fault while
// the weights are read, not a SIGBUS that ends the process.
func TestCopyCheckedTruncated(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the mapping and SIGBUS behaviour checked here are Linux's")
	}
	const n = 64 << 10 // 256 KiB of float32 after the header's page
	data := make([]byte, 0, 4*n)
	for i := range n {
		data = binary.LittleEndian.AppendUint32(data, math.Float32bits(float32(i)))
	}
	b, err := testbuild.Safetensors([]testbuild.Tensor{{Name: "w", DType: "F32", Shape: []int64{n}, Data: data}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.safetensors")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ck, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	tn, err := ck.Tensor("w")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 4096); err != nil { // keep the first page: the header
		t.Fatal(err)
	}
	err = scanChecked(ck, []checkpoint.Tensor{tn}, make([]byte, len(tn.Data)))
	if !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "memory fault") {
		t.Fatalf("scanChecked after truncation = %v, want ErrCheckpoint naming a memory fault", err)
	}
}
