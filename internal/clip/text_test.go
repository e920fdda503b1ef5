package clip

import (
	"slices"
	"testing"
)

func TestPoolPositions(t *testing.T) {
	ids := [][]int64{{49406, 320, 49407, 49407}, {49406, 269, 320, 269}, {5, 9, 9, 1}}
	if got := PoolPositions(ids, 49407); !slices.Equal(got, []int64{2, 0, 0}) {
		t.Errorf("eos 49407: %v", got)
	}
	// argmax: the first largest id
	if got := PoolPositions(ids, 2); !slices.Equal(got, []int64{2, 0, 1}) {
		t.Errorf("eos 2 (argmax): %v", got)
	}
	if got := PoolPositions(ids, 269); !slices.Equal(got, []int64{0, 1, 0}) {
		t.Errorf("eos 269: %v", got)
	}
}
