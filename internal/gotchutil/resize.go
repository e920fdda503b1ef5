package gotchutil

import (
	"errors"

	lib "github.com/sugarme/gotch/libtch"
	"github.com/sugarme/gotch/ts"
)

// UpsampleAA resizes x: [B, C, H, W] float to [B, C, h, w] with libtorch's antialiased bicubic (or
// bilinear) interpolation, align_corners=false: torch's interpolate(..., antialias=True). gotch
// generates the wrappers of these ops unexported (their names start with an underscore), so they are
// called through gotch's libtch binding as the generated wrapper does; a build without the op
// (HasOp("_upsample_bicubic2d_aa") false) fails here.
func (t *Tape) UpsampleAA(x *ts.Tensor, h, w int64, bilinear bool) *ts.Tensor {
	op := "_upsample_bicubic2d_aa"
	if bilinear {
		op = "_upsample_bilinear2d_aa"
	}
	if t.skip(x) {
		return nil
	}
	size := []int64{h, w}
	var out lib.Ctensor
	self := lib.Ctensor(x.Ctensor())
	// Arguments: output size, align_corners = 0, scales_h and scales_w absent (null flag 1).
	if bilinear {
		lib.Atg_UpsampleBilinear2dAa(&out, self, size, len(size), 0, 0, 1, 0, 1)
	} else {
		lib.Atg_UpsampleBicubic2dAa(&out, self, size, len(size), 0, 0, 1, 0, 1)
	}
	if err := ts.TorchErr(); err != nil {
		return t.Record(op, nil, err)
	}
	if out == nil {
		return t.Record(op, nil, errors.New("no tensor returned"))
	}
	return t.Record(op, ts.New(out, op), nil)
}
