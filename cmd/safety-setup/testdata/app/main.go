// Command app is the application that cmd/safety-setup's test builds outside the repository, as an
// application author would: it imports the library, loads a model directory and checks image files
// with the reference-exact path (PreprocessFile + CheckPixels), printing one JSON object per image.
//
//	app MODEL_DIR IMAGE...
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sdsafety/safety"
)

// row is one line of output: the file name and the library's Result (which carries JSON tags).
type row struct {
	File string `json:"file"`
	safety.Result
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: app MODEL_DIR IMAGE...")
		os.Exit(2)
	}
	checker, err := safety.Load(os.Args[1], safety.WithDevice(safety.DeviceCPU))
	if err != nil {
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(1)
	}
	defer checker.Close()
	enc := json.NewEncoder(os.Stdout)
	for _, path := range os.Args[2:] {
		pix, err := checker.PreprocessFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "app:", err)
			os.Exit(1)
		}
		res, err := checker.CheckPixels(context.Background(), pix, 1)
		if err != nil {
			fmt.Fprintln(os.Stderr, "app:", err)
			os.Exit(1)
		}
		if err := enc.Encode(row{filepath.Base(path), res[0]}); err != nil {
			fmt.Fprintln(os.Stderr, "app:", err)
			os.Exit(1)
		}
	}
}
