package setup

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// wrapper is one generated C wrapper of gotch's torch_api_generated.cpp.h: the atg_ function for one
// libtorch op.
type wrapper struct {
	Name string   // "atg_scaled_dot_product_attention"
	Sig  string   // its first line, up to and including "{"
	Body []string // every line, the signature and the closing "}" included
}

var wrapperStart = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_ \*]*?\b(atg_[A-Za-z0-9_]+)\(.*\{\s*$`)

// splitWrappers splits torch_api_generated.cpp.h into its wrappers; each ends at the first line that
// is exactly "}".
func splitWrappers(text string) []wrapper {
	lines := strings.Split(text, "\n")
	var out []wrapper
	for i := 0; i < len(lines); i++ {
		m := wrapperStart.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		j := i + 1
		for j < len(lines) && lines[j] != "}" {
			j++
		}
		end := min(j+1, len(lines))
		out = append(out, wrapper{Name: m[1], Sig: lines[i], Body: lines[i:end]})
		i = j
	}
	return out
}

// optionalTensorFixes: wrappers whose generated code passes an undefined tensor as an engaged
// optional<Tensor>, which libtorch 2.1 rejects ("Expected attn_mask dtype to be bool or to match query
// dtype"); an undefined (None) mask must become nullopt.
var optionalTensorFixes = map[string][2]string{
	"atg_scaled_dot_product_attention": {
		"(attn_mask ? *attn_mask : torch::Tensor())",
		"((attn_mask && attn_mask->defined()) ? c10::optional<torch::Tensor>(*attn_mask) : c10::optional<torch::Tensor>())",
	},
}

// fixed returns w's lines with the optional-tensor fix applied where one is known.
func (w wrapper) fixed() []string {
	fix, ok := optionalTensorFixes[w.Name]
	if !ok {
		return w.Body
	}
	out := make([]string, len(w.Body))
	for i, l := range w.Body {
		out[i] = strings.ReplaceAll(l, fix[0], fix[1])
	}
	return out
}

// stub returns a replacement for w that sets gotch's last error (gotch turns it into a Go error) and
// returns 0 where the wrapper returns a value.
func (w wrapper) stub(libtorchVersion string) []string {
	ret := strings.TrimSpace(strings.SplitN(w.Sig, w.Name, 2)[0])
	msg := fmt.Sprintf("gotch: op %s is not available in libtorch %s", strings.TrimPrefix(w.Name, "atg_"), libtorchVersion)
	lines := []string{w.Sig, fmt.Sprintf("  torch_last_err = strdup(%q);", msg)}
	if ret != "void" {
		lines = append(lines, "  return 0;")
	}
	return append(lines, "}")
}

const unitPrelude = "#include \"torch_api.h\"\n#include <torch/torch.h>\nusing namespace std;\n"

// span records which lines (1-based, inclusive) of a translation unit hold which wrapper.
type span struct {
	First, Last int
	Name        string
}

// unitSource writes the translation unit for ws, stubbing those named in stubs; spans maps compiler
// line numbers back to wrappers.
func unitSource(ws []wrapper, stubs map[string]bool, libtorchVersion string) (string, []span) {
	var b strings.Builder
	b.WriteString(unitPrelude)
	line := strings.Count(unitPrelude, "\n") + 1
	spans := make([]span, 0, len(ws))
	for _, w := range ws {
		lines := w.fixed()
		if stubs[w.Name] {
			lines = w.stub(libtorchVersion)
		}
		spans = append(spans, span{line, line + len(lines) - 1, w.Name})
		for _, l := range lines {
			b.WriteString(l)
			b.WriteByte('\n')
		}
		b.WriteByte('\n')
		line += len(lines) + 1
	}
	return b.String(), spans
}

var compilerError = regexp.MustCompile(`^(?:In file included from )?([^:\s]+\.cpp):(\d+):(?:\d+:)?\s*(?:error|required from)`)

// blame returns the wrappers of the unit src whose lines the compiler's stderr reports errors in
// (directly, or as the place a failing template was required from).
func blame(stderr, src string, spans []span) map[string]bool {
	bad := map[string]bool{}
	base := filepath.Base(src)
	for _, l := range strings.Split(stderr, "\n") {
		m := compilerError.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil || filepath.Base(m[1]) != base {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		for _, s := range spans {
			if s.First <= n && n <= s.Last {
				bad[s.Name] = true
			}
		}
	}
	return bad
}

// patchOutputBuffers fixes gotch's generated Go wrappers (ts/tensor-generated.go): each passes
// libtorch a C.malloc(0) block for the output tensor handles and never frees it, a leak on every op
// (sugarme/gotch#102), and multi-output ops write past the block's end. The block gets room for 16
// handles and is freed when the wrapper returns (the handles have been copied into Go tensors by
// then). It returns the number of sites patched.
func patchOutputBuffers(src string) (string, int) {
	n := 0
	for _, v := range []string{"ptr", "ctensorPtr0"} {
		old := v + " := (*lib.Ctensor)(unsafe.Pointer(C.malloc(0)))"
		n += strings.Count(src, old)
		src = strings.ReplaceAll(src, old, v+" := (*lib.Ctensor)(unsafe.Pointer(C.malloc(C.size_t(16 * unsafe.Sizeof(uintptr(0))))))\n"+
			"  defer C.free(unsafe.Pointer("+v+"))")
	}
	return src, n
}
