package main

import (
	"fmt"
	"io"
	"os"

	"github.com/sdsafety/safety/hub"
)

// progress prints "checked N/M" on stderr when there are many inputs and stderr is a terminal.
type progress struct {
	w       io.Writer
	checked int
	total   int
	on      bool
}

func newProgress(w io.Writer, total int, quiet bool) *progress {
	f, ok := w.(*os.File)
	on := !quiet && total >= 16 && ok && hub.IsTerminal(f)
	return &progress{w: w, total: total, on: on}
}

func (p *progress) add(n int) {
	p.checked += n
	if p.on {
		fmt.Fprintf(p.w, "\rchecked %d/%d", p.checked, p.total)
	}
}

func (p *progress) finish() {
	if p.on {
		fmt.Fprintln(p.w)
	}
}
