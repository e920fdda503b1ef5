package hub

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// TextProgress draws download progress as a one-line text bar, redrawn in place with a carriage
// return, for example on a terminal:
//
//	model.safetensors  42% [==========>               ] 512.0 MiB / 1.2 GiB  48.3 MiB/s
//
// Use its Update method as [Client.Progress], typically only when [IsTerminal] is true of os.Stderr. Redraws are
// limited to about ten a second; the final state of each file is always drawn and ends the line. It is
// safe for concurrent use, though concurrent downloads share the one line.
type TextProgress struct {
	w   io.Writer
	now func() time.Time

	mu       sync.Mutex
	file     string    // file being shown
	start    time.Time // when it was first reported
	base     int64     // bytes it had at that time (a resumed part)
	drawn    time.Time // last redraw
	width    int       // length of the last line drawn, to blank leftovers
	finished bool      // its line is complete
}

// NewTextProgress returns a TextProgress that writes to w (usually os.Stderr).
func NewTextProgress(w io.Writer) *TextProgress {
	return &TextProgress{w: w, now: time.Now}
}

// Update reports that file has done of total bytes (total < 0: unknown). It has the signature of
// [Client.Progress].
func (p *TextProgress) Update(file string, done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if file != p.file {
		if p.file != "" && !p.finished {
			io.WriteString(p.w, "\n")
		}
		p.file, p.start, p.base, p.width, p.finished = file, now, done, 0, false
		p.drawn = time.Time{}
	} else if p.finished {
		if total >= 0 && done >= total {
			return // already drawn complete
		}
		p.start, p.base, p.width, p.finished = now, done, 0, false // the same file again
	}
	if done < p.base { // restarted from scratch
		p.start, p.base = now, done
	}
	complete := total >= 0 && done >= total
	if !complete && !p.drawn.IsZero() && now.Sub(p.drawn) < 100*time.Millisecond {
		return
	}
	p.drawn = now

	var b strings.Builder
	name := file
	if len(name) > 40 {
		name = "…" + name[len(name)-39:]
	}
	b.WriteString(name)
	if total > 0 {
		frac := float64(done) / float64(total)
		const barWidth = 25
		fill := int(frac * barWidth)
		bar := strings.Repeat("=", fill)
		if fill < barWidth {
			bar += ">" + strings.Repeat(" ", barWidth-fill-1)
		}
		fmt.Fprintf(&b, " %3d%% [%s] %s / %s", int(frac*100), bar, formatBytes(done), formatBytes(total))
	} else {
		fmt.Fprintf(&b, " %s", formatBytes(done))
	}
	if elapsed := now.Sub(p.start); elapsed >= 200*time.Millisecond && done > p.base {
		fmt.Fprintf(&b, "  %s/s", formatBytes(int64(float64(done-p.base)/elapsed.Seconds())))
	}
	line := b.String()
	pad := ""
	if n := len([]rune(line)); n < p.width {
		pad = strings.Repeat(" ", p.width-n)
	} else {
		p.width = n
	}
	end := ""
	if complete {
		end = "\n"
		p.finished = true
	}
	io.WriteString(p.w, "\r"+line+pad+end)
}

// formatBytes formats a byte count with binary units.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[i])
}
