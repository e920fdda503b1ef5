package gotchutil

import (
	"os"
	"testing"
)

func TestMallocTuneWanted(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want bool
	}{
		{nil, true},
		{map[string]string{MallocTuneEnv: "1"}, true},
		{map[string]string{MallocTuneEnv: "0"}, false},
		{map[string]string{"MALLOC_TRIM_THRESHOLD_": "131072"}, false},
		{map[string]string{"MALLOC_MMAP_THRESHOLD_": ""}, false}, // set, even if empty
		{map[string]string{"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, false},
	}
	for _, c := range cases {
		lookup := func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }
		if got := mallocTuneWanted(lookup); got != c.want {
			t.Errorf("env %v: mallocTuneWanted = %v, want %v", c.env, got, c.want)
		}
	}
}

// TestTuneMalloc: the first call decides for the process, and on glibc (this project's Linux builds)
// with nothing in the environment against it, it tunes.
func TestTuneMalloc(t *testing.T) {
	first := TuneMalloc()
	if TuneMalloc() != first {
		t.Fatal("TuneMalloc changed its answer on a second call")
	}
	if wanted := mallocTuneWanted(os.LookupEnv); first && !wanted {
		t.Fatal("TuneMalloc tuned glibc although the environment asks it not to")
	} else if wanted && !first && glibcBuild {
		t.Fatal("TuneMalloc did not tune glibc's allocator")
	}
}
