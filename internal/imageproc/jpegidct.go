package imageproc

// The "islow" inverse DCT of libjpeg (jidctint.c, Loeffler–Ligtenberg–Moschytz with 12 multiplies),
// including dequantisation and libjpeg's post-IDCT range limit, for 8-bit samples. The arithmetic
// is integer-exact, so the output equals libjpeg-turbo's (whose SIMD versions are bit-exact with its
// C code).

const (
	idctConstBits = 13
	idctPass1Bits = 2

	fix0_298631336 = 2446
	fix0_390180644 = 3196
	fix0_541196100 = 4433
	fix0_765366865 = 6270
	fix0_899976223 = 7373
	fix1_175875602 = 9633
	fix1_501321110 = 12299
	fix1_847759065 = 15137
	fix1_961570560 = 16069
	fix2_053119869 = 16819
	fix2_562915447 = 20995
	fix3_072711026 = 25172
)

// descale is DESCALE(x, n): x/2^n rounded, with an arithmetic shift.
func descale(x int64, n uint) int64 { return (x + 1<<(n-1)) >> n }

// rangeLimit maps an IDCT output (before the +128 level shift) to a sample the way libjpeg's
// IDCT_range_limit table does, including its wrap-around for wild values: the index is taken
// modulo 1024.
func rangeLimit(x int64) uint8 {
	t := x & 1023
	switch {
	case t < 128:
		return uint8(t + 128)
	case t < 512:
		return 255
	case t < 896:
		return 0
	default:
		return uint8(t - 896)
	}
}

// idctBlock transforms one block of quantised coefficients (natural order) into 8×8 samples at
// out[0], out[stride], ... .
func idctBlock(coef []int16, quant *[64]int32, out []uint8, stride int) {
	var ws [64]int32
	coef = coef[:64]
	// Pass 1: columns from the input, results scaled up by PASS1_BITS into ws.
	for c := 0; c < 8; c++ {
		if coef[8+c] == 0 && coef[16+c] == 0 && coef[24+c] == 0 && coef[32+c] == 0 &&
			coef[40+c] == 0 && coef[48+c] == 0 && coef[56+c] == 0 {
			dc := (int32(coef[c]) * quant[c]) << idctPass1Bits
			for r := 0; r < 8; r++ {
				ws[8*r+c] = dc
			}
			continue
		}
		dq := func(r int) int64 { return int64(int32(coef[8*r+c]) * quant[8*r+c]) }
		// Even part.
		z2, z3 := dq(2), dq(6)
		z1 := (z2 + z3) * fix0_541196100
		tmp2 := z1 + z3*-fix1_847759065
		tmp3 := z1 + z2*fix0_765366865
		z2, z3 = dq(0), dq(4)
		tmp0 := (z2 + z3) << idctConstBits
		tmp1 := (z2 - z3) << idctConstBits
		tmp10, tmp13 := tmp0+tmp3, tmp0-tmp3
		tmp11, tmp12 := tmp1+tmp2, tmp1-tmp2
		// Odd part.
		tmp0, tmp1, tmp2, tmp3 = dq(7), dq(5), dq(3), dq(1)
		o0, o1, o2, o3 := oddPart(tmp0, tmp1, tmp2, tmp3)
		const sh = idctConstBits - idctPass1Bits
		ws[c] = int32(descale(tmp10+o3, sh))
		ws[56+c] = int32(descale(tmp10-o3, sh))
		ws[8+c] = int32(descale(tmp11+o2, sh))
		ws[48+c] = int32(descale(tmp11-o2, sh))
		ws[16+c] = int32(descale(tmp12+o1, sh))
		ws[40+c] = int32(descale(tmp12-o1, sh))
		ws[24+c] = int32(descale(tmp13+o0, sh))
		ws[32+c] = int32(descale(tmp13-o0, sh))
	}
	// Pass 2: rows from ws to the output.
	const sh = idctConstBits + idctPass1Bits + 3
	for r := 0; r < 8; r++ {
		w := ws[8*r : 8*r+8 : 8*r+8]
		o := out[r*stride : r*stride+8 : r*stride+8]
		if w[1] == 0 && w[2] == 0 && w[3] == 0 && w[4] == 0 && w[5] == 0 && w[6] == 0 && w[7] == 0 {
			v := rangeLimit(descale(int64(w[0]), idctPass1Bits+3))
			for i := range o {
				o[i] = v
			}
			continue
		}
		z2, z3 := int64(w[2]), int64(w[6])
		z1 := (z2 + z3) * fix0_541196100
		tmp2 := z1 + z3*-fix1_847759065
		tmp3 := z1 + z2*fix0_765366865
		tmp0 := (int64(w[0]) + int64(w[4])) << idctConstBits
		tmp1 := (int64(w[0]) - int64(w[4])) << idctConstBits
		tmp10, tmp13 := tmp0+tmp3, tmp0-tmp3
		tmp11, tmp12 := tmp1+tmp2, tmp1-tmp2
		o0, o1, o2, o3 := oddPart(int64(w[7]), int64(w[5]), int64(w[3]), int64(w[1]))
		o[0] = rangeLimit(descale(tmp10+o3, sh))
		o[7] = rangeLimit(descale(tmp10-o3, sh))
		o[1] = rangeLimit(descale(tmp11+o2, sh))
		o[6] = rangeLimit(descale(tmp11-o2, sh))
		o[2] = rangeLimit(descale(tmp12+o1, sh))
		o[5] = rangeLimit(descale(tmp12-o1, sh))
		o[3] = rangeLimit(descale(tmp13+o0, sh))
		o[4] = rangeLimit(descale(tmp13-o0, sh))
	}
}

// oddPart is the odd half of the 1-D IDCT; inputs are the coefficients 7, 5, 3, 1.
func oddPart(tmp0, tmp1, tmp2, tmp3 int64) (int64, int64, int64, int64) {
	z1 := tmp0 + tmp3
	z2 := tmp1 + tmp2
	z3 := tmp0 + tmp2
	z4 := tmp1 + tmp3
	z5 := (z3 + z4) * fix1_175875602
	tmp0 *= fix0_298631336
	tmp1 *= fix2_053119869
	tmp2 *= fix3_072711026
	tmp3 *= fix1_501321110
	z1 *= -fix0_899976223
	z2 *= -fix2_562915447
	z3 = z3*-fix1_961570560 + z5
	z4 = z4*-fix0_390180644 + z5
	tmp0 += z1 + z3
	tmp1 += z2 + z4
	tmp2 += z2 + z3
	tmp3 += z1 + z4
	return tmp0, tmp1, tmp2, tmp3
}
