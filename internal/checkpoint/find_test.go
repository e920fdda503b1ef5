package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindWeights(t *testing.T) {
	all := []string{SafetensorsName, TorchName, SafetensorsFP16Name, TorchFP16Name}
	for _, c := range []struct {
		present []string
		fp16    bool
		want    string
	}{
		{all, false, SafetensorsName},
		{all, true, SafetensorsFP16Name},
		{[]string{TorchName, SafetensorsFP16Name}, false, TorchName},
		{[]string{TorchName, SafetensorsFP16Name}, true, SafetensorsFP16Name},
		{[]string{TorchName, TorchFP16Name}, true, TorchFP16Name},
		{[]string{SafetensorsName, TorchFP16Name}, true, TorchFP16Name},
		{[]string{SafetensorsName, TorchName}, true, SafetensorsName},
		{[]string{TorchFP16Name}, false, TorchFP16Name},
	} {
		dir := t.TempDir()
		for _, n := range c.present {
			if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := FindWeights(dir, c.fp16)
		if err != nil || got != filepath.Join(dir, c.want) {
			t.Errorf("present %v fp16 %v: got %q %v, want %s", c.present, c.fp16, got, err, c.want)
		}
	}
}

func TestFindWeightsSymlinkAndErrors(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "blob")
	os.WriteFile(target, nil, 0o644)
	if err := os.Symlink(target, filepath.Join(dir, TorchName)); err != nil {
		t.Skip(err)
	}
	if got, err := FindWeights(dir, false); err != nil || filepath.Base(got) != TorchName {
		t.Fatalf("symlink: %q %v", got, err)
	}

	empty := t.TempDir()
	os.WriteFile(filepath.Join(empty, "model.safetensors.index.json"), []byte("{}"), 0o644)
	_, err := FindWeights(empty, false)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "model.safetensors, pytorch_model.bin, model.fp16.safetensors, pytorch_model.fp16.bin") ||
		!strings.Contains(err.Error(), "sharded") {
		t.Fatalf("error %v", err)
	}
	if _, err := FindWeights(filepath.Join(empty, "missing"), false); err == nil {
		t.Fatal("missing directory")
	}
	if _, err := FindWeights(target, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("file as dir: %v", err)
	}
	isDir := t.TempDir()
	os.Mkdir(filepath.Join(isDir, SafetensorsName), 0o755)
	if _, err := FindWeights(isDir, false); !errors.Is(err, ErrFormat) {
		t.Fatalf("directory named like weights: %v", err)
	}
}
