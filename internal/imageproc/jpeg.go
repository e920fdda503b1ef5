package imageproc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"runtime"
)

// This file is a JPEG decoder written to produce exactly the samples that libjpeg(-turbo) gives
// Pillow: Huffman-coded baseline, extended and progressive JPEGs; libjpeg's "islow" integer IDCT
// (jidctint.c) with its post-IDCT range limiting; fancy chroma upsampling (jdsample.c); libjpeg's
// colour space guess (jdapimin.c) and conversions (jdcolor.c); and for CMYK/YCCK Pillow's "CMYK;I"
// inversion followed by its cmyk2rgb. image/jpeg uses a different IDCT and no fancy upsampling, so
// its output differs from Pillow's by several levels.
//
// Not supported (an error): arithmetic coding, lossless and hierarchical JPEG, 12-bit samples, DNL,
// more than maxJPEGScans scans.
// Not reproduced: libjpeg's inter-block smoothing, which only applies to progressive files whose
// scans leave low-frequency coefficient bits unsent.

var errJPEGTruncated = fmt.Errorf("truncated data: %w", io.ErrUnexpectedEOF)

// zigzag maps the k-th coefficient in zig-zag order to its natural (row-major) index.
var zigzag = [64]uint8{
	0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
	12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
	35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
	58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
}

// natural returns the natural index of zig-zag position k, saturating at 63 like libjpeg's padded
// jpeg_natural_order table does for corrupt run lengths.
func natural(k int) int {
	if k > 63 {
		return 63
	}
	return int(zigzag[k])
}

type huffTable struct {
	lut     [1 << 9]uint16 // (length << 8) | symbol for codes of at most 9 bits; 0 = longer
	maxcode [18]int32      // largest code of each length, -1 if none
	valptr  [17]int32      // index into vals of the first code of each length
	mincode [17]int32
	vals    []uint8
}

func buildHuff(counts [16]uint8, vals []uint8) (*huffTable, error) {
	t := &huffTable{vals: vals}
	code := int32(0)
	k := int32(0)
	for l := 1; l <= 16; l++ {
		n := int32(counts[l-1])
		if n == 0 {
			t.maxcode[l] = -1
		} else {
			t.valptr[l] = k
			t.mincode[l] = code
			code += n
			k += n
			t.maxcode[l] = code - 1
		}
		if code >= 1<<l { // libjpeg rejects tables that use the all-ones code
			return nil, errors.New("bad Huffman table")
		}
		code <<= 1
	}
	t.maxcode[17] = 0x7fffffff
	// lookahead table
	code = 0
	k = 0
	for l := 1; l <= 9; l++ {
		for i := 0; i < int(counts[l-1]); i++ {
			shift := 9 - l
			for j := 0; j < 1<<shift; j++ {
				t.lut[int(code)<<shift|j] = uint16(l)<<8 | uint16(vals[k])
			}
			code++
			k++
		}
		code <<= 1
	}
	return t, nil
}

// bitReader reads entropy-coded data: it removes the 0x00 stuffed after 0xFF and stops at a marker.
// Past a marker it feeds zero bits, as libjpeg does; past the end of the data it feeds zero bits too
// but remembers that real data was missing.
type bitReader struct {
	data   []byte
	pos    int
	acc    uint64 // bits, MSB first
	n      uint   // valid bits in acc
	pad    uint   // how many of the low n bits are zero padding
	marker bool   // stopped at a marker (at data[pos])
	eof    bool   // ran out of data
	short  bool   // padding past the end of the data was consumed
	// exhausted: padding was consumed (the data ran out at a marker or at the end): libjpeg-turbo's
	// insufficient_data, after which it leaves the rest of the restart interval's blocks alone.
	exhausted bool
}

func (b *bitReader) reset(pos int) {
	*b = bitReader{data: b.data, pos: pos}
}

func (b *bitReader) fill() {
	for b.n <= 56 {
		var c byte
		switch {
		case b.marker || b.eof:
			b.pad += 8
		case b.pos >= len(b.data):
			b.eof = true
			b.pad += 8
		default:
			c = b.data[b.pos]
			if c != 0xff {
				b.pos++
				break
			}
			// 0xFF: skip fill bytes; 0xFF 0x00 is a data byte 0xFF, anything else a marker.
			p := b.pos + 1
			for p < len(b.data) && b.data[p] == 0xff {
				p++
			}
			switch {
			case p >= len(b.data):
				b.eof = true
				c = 0
				b.pad += 8
			case b.data[p] == 0:
				b.pos = p + 1
			default:
				b.pos = p - 1 // at the last 0xFF before the marker code
				b.marker = true
				c = 0
				b.pad += 8
			}
		}
		b.acc |= uint64(c) << (56 - b.n)
		b.n += 8
	}
}

func (b *bitReader) consume(k uint) {
	if real := b.n - b.pad; k > real {
		b.exhausted = true
		b.short = b.short || b.eof
	}
	b.acc <<= k
	b.n -= k
	if b.pad > b.n {
		b.pad = b.n
	}
}

func (b *bitReader) bits(k uint) int32 {
	if k == 0 {
		return 0
	}
	if b.n < k {
		b.fill()
	}
	v := int32(b.acc >> (64 - k))
	b.consume(k)
	return v
}

func (b *bitReader) bit() bool { return b.bits(1) != 0 }

// receiveExtend reads s bits and sign-extends them (HUFF_EXTEND).
func (b *bitReader) receiveExtend(s int) int32 {
	if s == 0 {
		return 0
	}
	v := b.bits(uint(s))
	if v < 1<<(s-1) {
		v += -1<<s + 1
	}
	return v
}

// decode reads one Huffman symbol. A code longer than 16 bits (corrupt data) gives symbol 0, as in
// libjpeg.
func (b *bitReader) decode(t *huffTable) int {
	if b.n < 16 {
		b.fill()
	}
	if e := t.lut[b.acc>>(64-9)]; e != 0 {
		b.consume(uint(e >> 8))
		return int(e & 0xff)
	}
	code := int32(0)
	l := 0
	for {
		l++
		code = code<<1 | int32(b.acc>>63)
		b.consume(1)
		if l > 16 {
			return 0
		}
		if code <= t.maxcode[l] {
			idx := t.valptr[l] + code - t.mincode[l]
			if idx < 0 || int(idx) >= len(t.vals) {
				return 0
			}
			return int(t.vals[idx])
		}
	}
}

type jpegComponent struct {
	id       uint8
	h, v     int
	tq       int
	quant    *[64]int32 // latched at the component's first scan
	bw, bh   int        // blocks per row / column, padded to whole MCUs
	cw, ch   int        // libjpeg's downsampled_width / downsampled_height
	coef     []int16    // bw*bh blocks of 64 coefficients, natural order
	dcPred   int32
	dcTable  int
	acTable  int
	seenScan bool
}

type jpegDecoder struct {
	data          []byte
	width, height int
	comps         []jpegComponent
	hmax, vmax    int
	mcusX, mcusY  int
	progressive   bool
	quant         [4][64]int32
	quantSet      [4]bool
	huff          [2][4]*huffTable
	restart       int
	jfif, adobe   bool
	adobeXform    int
	eobrun        int32
	scans         int
	blockVisits   int64 // blocks walked by the scans so far
	br            bitReader
}

// maxJPEGScans bounds the work a small file can cause: every scan walks all blocks, and a corrupt
// scan costs no data (libjpeg feeds zeros past a marker). Real files have at most a few dozen scans;
// djpeg suggests 500 as a limit for untrusted input.
const maxJPEGScans = 500

// maxJPEGPasses bounds the blocks all scans together may walk, as a multiple of the image's blocks:
// within the pixel limit, 500 scans over every block of a 100-megapixel image took 27 s from a 5 KB
// file. libjpeg's standard progressive script walks each block 4 to 6 times; 64 leaves room for any
// encoder's script.
const maxJPEGPasses = 64

// decodeJPEG decodes data into packed RGB, the way Pillow's Image.open(...).convert("RGB") sees it.
func decodeJPEG(data []byte) (*RGB, error) {
	d := &jpegDecoder{data: data}
	if err := d.run(); err != nil {
		return nil, err
	}
	return d.toRGB()
}

func (d *jpegDecoder) run() error {
	data := d.data
	if len(data) < 2 || data[0] != 0xff || data[1] != 0xd8 {
		return errors.New("missing SOI marker")
	}
	pos := 2
	sawFrame := false
	for {
		// Find the next marker, skipping garbage and fill bytes like libjpeg's next_marker.
		for pos < len(data) && data[pos] != 0xff {
			pos++
		}
		for pos < len(data) && data[pos] == 0xff {
			pos++
		}
		if pos >= len(data) {
			return errJPEGTruncated
		}
		m := data[pos]
		pos++
		if m == 0 {
			continue // stuffed byte outside a scan: garbage
		}
		switch {
		case m == 0xd9: // EOI
			if !sawFrame {
				return errors.New("no image before EOI")
			}
			return nil
		case m == 0xd8 || m == 0x01 || (m >= 0xd0 && m <= 0xd7):
			continue // no length
		}
		if pos+2 > len(data) {
			return errJPEGTruncated
		}
		n := int(binary.BigEndian.Uint16(data[pos:]))
		if n < 2 || pos+n > len(data) {
			return errJPEGTruncated
		}
		seg := data[pos+2 : pos+n]
		next := pos + n
		var err error
		switch m {
		case 0xc0, 0xc1, 0xc2:
			if sawFrame {
				return errors.New("more than one frame")
			}
			sawFrame = true
			d.progressive = m == 0xc2
			err = d.parseSOF(seg)
		case 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf:
			return fmt.Errorf("unsupported JPEG process (SOF%d: lossless, hierarchical or arithmetic coding)", m-0xc0)
		case 0xc4:
			err = d.parseDHT(seg)
		case 0xcc:
			return errors.New("unsupported arithmetic coding conditioning (DAC)")
		case 0xdb:
			err = d.parseDQT(seg)
		case 0xdd:
			if len(seg) < 2 {
				return errors.New("bad DRI segment")
			}
			d.restart = int(binary.BigEndian.Uint16(seg))
		case 0xdc:
			return errors.New("unsupported DNL marker")
		case 0xda:
			if !sawFrame {
				return errors.New("scan before frame header")
			}
			if d.scans++; d.scans > maxJPEGScans {
				return fmt.Errorf("more than %d scans", maxJPEGScans)
			}
			next, err = d.scan(seg, next)
		case 0xe0:
			if len(seg) >= 5 && string(seg[:5]) == "JFIF\x00" {
				d.jfif = true
			}
		case 0xee:
			if len(seg) >= 12 && string(seg[:5]) == "Adobe" {
				d.adobe = true
				d.adobeXform = int(seg[11])
			}
		}
		if err != nil {
			return err
		}
		pos = next
	}
}

func (d *jpegDecoder) parseSOF(s []byte) error {
	if len(s) < 6 {
		return errors.New("bad SOF segment")
	}
	if s[0] != 8 {
		return fmt.Errorf("unsupported sample precision %d", s[0])
	}
	d.height = int(binary.BigEndian.Uint16(s[1:]))
	d.width = int(binary.BigEndian.Uint16(s[3:]))
	nc := int(s[5])
	if d.width == 0 || d.height == 0 {
		return fmt.Errorf("%dx%d image: %w", d.width, d.height, ErrEmptyImage)
	}
	if nc != 1 && nc != 3 && nc != 4 {
		return fmt.Errorf("unsupported number of components %d", nc)
	}
	if len(s) < 6+3*nc {
		return errors.New("bad SOF segment")
	}
	d.comps = make([]jpegComponent, nc)
	d.hmax, d.vmax = 1, 1
	for i := range d.comps {
		c := &d.comps[i]
		c.id = s[6+3*i]
		c.h, c.v = int(s[7+3*i]>>4), int(s[7+3*i]&15)
		c.tq = int(s[8+3*i])
		if c.h < 1 || c.h > 4 || c.v < 1 || c.v > 4 || c.tq > 3 {
			return errors.New("bad component parameters")
		}
		d.hmax, d.vmax = max(d.hmax, c.h), max(d.vmax, c.v)
	}
	d.mcusX = (d.width + 8*d.hmax - 1) / (8 * d.hmax)
	d.mcusY = (d.height + 8*d.vmax - 1) / (8 * d.vmax)
	for i := range d.comps {
		c := &d.comps[i]
		if d.hmax%c.h != 0 || d.vmax%c.v != 0 {
			return errors.New("unsupported fractional sampling factors")
		}
		c.cw = (d.width*c.h + d.hmax - 1) / d.hmax
		c.ch = (d.height*c.v + d.vmax - 1) / d.vmax
		c.bw, c.bh = d.mcusX*c.h, d.mcusY*c.v
		c.coef = make([]int16, c.bw*c.bh*64)
	}
	return nil
}

func (d *jpegDecoder) parseDHT(s []byte) error {
	for len(s) > 0 {
		if len(s) < 17 {
			return errors.New("bad DHT segment")
		}
		class, id := int(s[0]>>4), int(s[0]&15)
		if class > 1 || id > 3 {
			return errors.New("bad DHT table id")
		}
		var counts [16]uint8
		copy(counts[:], s[1:17])
		total := 0
		for _, c := range counts {
			total += int(c)
		}
		if total > 256 || len(s) < 17+total {
			return errors.New("bad DHT segment")
		}
		vals := append([]uint8(nil), s[17:17+total]...)
		t, err := buildHuff(counts, vals)
		if err != nil {
			return err
		}
		d.huff[class][id] = t
		s = s[17+total:]
	}
	return nil
}

func (d *jpegDecoder) parseDQT(s []byte) error {
	for len(s) > 0 {
		pq, id := int(s[0]>>4), int(s[0]&15)
		if pq > 1 || id > 3 {
			return errors.New("bad DQT segment")
		}
		n := 64 * (pq + 1)
		if len(s) < 1+n {
			return errors.New("bad DQT segment")
		}
		for k := 0; k < 64; k++ {
			var q int32
			if pq == 0 {
				q = int32(s[1+k])
			} else {
				// libjpeg stores multipliers as short in SIMD builds.
				q = int32(int16(binary.BigEndian.Uint16(s[1+2*k:])))
			}
			d.quant[id][zigzag[k]] = q
		}
		d.quantSet[id] = true
		s = s[1+n:]
	}
	return nil
}

// scan decodes one scan whose header is h and whose entropy-coded data starts at pos; it returns the
// position of the marker that ends the scan.
func (d *jpegDecoder) scan(h []byte, pos int) (int, error) {
	if len(h) < 1 {
		return 0, errors.New("bad SOS segment")
	}
	ns := int(h[0])
	if ns < 1 || ns > 4 || len(h) < 1+2*ns+3 {
		return 0, errors.New("bad SOS segment")
	}
	comps := make([]*jpegComponent, ns)
	for i := 0; i < ns; i++ {
		id := h[1+2*i]
		var c *jpegComponent
		for j := range d.comps {
			if d.comps[j].id == id {
				c = &d.comps[j]
			}
		}
		if c == nil {
			return 0, fmt.Errorf("scan references unknown component %d", id)
		}
		c.dcTable, c.acTable = int(h[2+2*i]>>4), int(h[2+2*i]&15)
		if c.dcTable > 3 || c.acTable > 3 {
			return 0, errors.New("bad SOS table selector")
		}
		if !c.seenScan {
			if !d.quantSet[c.tq] {
				return 0, fmt.Errorf("missing quantization table %d", c.tq)
			}
			q := d.quant[c.tq]
			c.quant = &q
			c.seenScan = true
		}
		comps[i] = c
	}
	ss, se := int(h[1+2*ns]), int(h[2+2*ns])
	ah, al := uint(h[3+2*ns]>>4), uint(h[3+2*ns]&15)
	if !d.progressive {
		ss, se, ah, al = 0, 63, 0, 0
	} else {
		if ss > se || se > 63 || (ss == 0 && se != 0) || (ss > 0 && ns != 1) || al > 13 {
			return 0, errors.New("bad progressive scan parameters")
		}
	}
	// Check the tables the scan needs.
	for _, c := range comps {
		if ss == 0 && ah == 0 && d.huff[0][c.dcTable] == nil {
			return 0, fmt.Errorf("missing DC Huffman table %d", c.dcTable)
		}
		if se > 0 && d.huff[1][c.acTable] == nil {
			return 0, fmt.Errorf("missing AC Huffman table %d", c.acTable)
		}
		c.dcPred = 0
	}
	d.eobrun = 0
	d.br = bitReader{data: d.data, pos: pos}

	var decodeBlock func(c *jpegComponent, blk []int16)
	switch {
	case !d.progressive:
		decodeBlock = d.blockBaseline
	case ss == 0 && ah == 0:
		decodeBlock = func(c *jpegComponent, blk []int16) { d.blockDCFirst(c, blk, al) }
	case ss == 0:
		decodeBlock = func(c *jpegComponent, blk []int16) { d.blockDCRefine(blk, al) }
	case ah == 0:
		decodeBlock = func(c *jpegComponent, blk []int16) { d.blockACFirst(c, blk, ss, se, al) }
	default:
		decodeBlock = func(c *jpegComponent, blk []int16) { d.blockACRefine(c, blk, ss, se, al) }
	}

	var mcusX, mcusY int
	if ns == 1 {
		c := comps[0]
		mcusX, mcusY = (c.cw+7)/8, (c.ch+7)/8
	} else {
		mcusX, mcusY = d.mcusX, d.mcusY
	}
	perMCU := 1
	if ns > 1 {
		perMCU = 0
		for _, c := range comps {
			perMCU += c.h * c.v
		}
	}
	// Bound the work of all scans together (see maxJPEGPasses), before this scan runs.
	total := 0
	for i := range d.comps {
		total += d.comps[i].bw * d.comps[i].bh
	}
	if d.blockVisits += int64(mcusX) * int64(mcusY) * int64(perMCU); d.blockVisits > int64(maxJPEGPasses)*int64(total) {
		return 0, fmt.Errorf("scans walk more than %d times the image's %d blocks: %w", maxJPEGPasses, total, ErrTooLarge)
	}
	mcu := 0
	for my := 0; my < mcusY; my++ {
		for mx := 0; mx < mcusX; mx++ {
			if d.restart > 0 && mcu > 0 && mcu%d.restart == 0 {
				d.processRestart(comps)
			}
			mcu++
			if d.br.exhausted {
				// libjpeg-turbo's decode_mcu: once the data has run out, the MCU is left as it is
				// (zeros in a first scan) until the next restart marker.
				continue
			}
			if ns == 1 {
				c := comps[0]
				b := (my*c.bw + mx) * 64
				decodeBlock(c, c.coef[b:b+64:b+64])
				continue
			}
			for _, c := range comps {
				for v := 0; v < c.v; v++ {
					for u := 0; u < c.h; u++ {
						b := ((my*c.v+v)*c.bw + mx*c.h + u) * 64
						decodeBlock(c, c.coef[b:b+64:b+64])
					}
				}
			}
		}
		if d.br.short {
			return 0, errJPEGTruncated
		}
	}
	if d.br.short {
		return 0, errJPEGTruncated
	}
	return d.br.pos, nil
}

// processRestart discards the rest of the current byte, consumes an RSTn marker if it is next, and
// resets the DC predictions and the EOB run.
func (d *jpegDecoder) processRestart(comps []*jpegComponent) {
	p := d.br.pos
	if !d.br.marker {
		// Skip to the marker (normally right here).
		for p+1 < len(d.data) && !(d.data[p] == 0xff && d.data[p+1] != 0 && d.data[p+1] != 0xff) {
			p++
		}
	}
	q := p
	for q < len(d.data) && d.data[q] == 0xff {
		q++
	}
	rst := q < len(d.data) && d.data[q] >= 0xd0 && d.data[q] <= 0xd7
	if rst {
		p = q + 1
	}
	exhausted := d.br.exhausted
	d.br.reset(p)
	// libjpeg-turbo clears insufficient_data only when it read the restart marker; stopped at any other
	// marker, the next interval has no data either.
	d.br.exhausted = exhausted && !rst
	for _, c := range comps {
		c.dcPred = 0
	}
	d.eobrun = 0
}

func (d *jpegDecoder) blockBaseline(c *jpegComponent, blk []int16) {
	br := &d.br
	s := br.decode(d.huff[0][c.dcTable])
	c.dcPred += br.receiveExtend(s)
	blk[0] = int16(c.dcPred)
	ac := d.huff[1][c.acTable]
	for k := 1; k < 64; k++ {
		rs := br.decode(ac)
		r, s := rs>>4, rs&15
		if s != 0 {
			k += r
			blk[natural(k)] = int16(br.receiveExtend(s))
		} else {
			if r != 15 {
				break
			}
			k += 15
		}
	}
}

func (d *jpegDecoder) blockDCFirst(c *jpegComponent, blk []int16, al uint) {
	br := &d.br
	s := br.decode(d.huff[0][c.dcTable])
	c.dcPred += br.receiveExtend(s)
	blk[0] = int16(c.dcPred << al)
}

func (d *jpegDecoder) blockDCRefine(blk []int16, al uint) {
	if d.br.bit() {
		blk[0] |= 1 << al
	}
}

func (d *jpegDecoder) blockACFirst(c *jpegComponent, blk []int16, ss, se int, al uint) {
	if d.eobrun > 0 {
		d.eobrun--
		return
	}
	br := &d.br
	ac := d.huff[1][c.acTable]
	for k := ss; k <= se; k++ {
		rs := br.decode(ac)
		r, s := rs>>4, rs&15
		if s != 0 {
			k += r
			blk[natural(k)] = int16(br.receiveExtend(s) << al)
		} else {
			if r != 15 {
				d.eobrun = 1 << r
				if r != 0 {
					d.eobrun += br.bits(uint(r))
				}
				d.eobrun--
				break
			}
			k += 15
		}
	}
}

func (d *jpegDecoder) blockACRefine(c *jpegComponent, blk []int16, ss, se int, al uint) {
	br := &d.br
	p1 := int16(1) << al
	m1 := int16(-1) << al
	k := ss
	if d.eobrun == 0 {
		ac := d.huff[1][c.acTable]
		for ; k <= se; k++ {
			rs := br.decode(ac)
			r, s := rs>>4, rs&15
			var val int16
			if s != 0 {
				// s should be 1; libjpeg only warns otherwise
				if br.bit() {
					val = p1
				} else {
					val = m1
				}
			} else if r != 15 {
				d.eobrun = 1 << r
				if r != 0 {
					d.eobrun += br.bits(uint(r))
				}
				break
			}
			// Advance over already-nonzero coefficients (refining them) and r zero ones.
			for k <= se {
				coef := &blk[natural(k)]
				if *coef != 0 {
					if br.bit() && *coef&p1 == 0 {
						if *coef >= 0 {
							*coef += p1
						} else {
							*coef += m1
						}
					}
				} else {
					r--
					if r < 0 {
						break
					}
				}
				k++
			}
			if val != 0 {
				blk[natural(k)] = val
			}
		}
	}
	if d.eobrun > 0 {
		for ; k <= se; k++ {
			coef := &blk[natural(k)]
			if *coef != 0 {
				if br.bit() && *coef&p1 == 0 {
					if *coef >= 0 {
						*coef += p1
					} else {
						*coef += m1
					}
				}
			}
		}
		d.eobrun--
	}
}

// toRGB runs the IDCT over every component, upsamples, converts the colour space the way libjpeg
// guesses it (jdapimin.c default_decompress_parms) and returns RGB as Pillow's convert("RGB") would.
func (d *jpegDecoder) toRGB() (*RGB, error) {
	if len(d.comps) == 0 {
		return nil, errors.New("no frame header")
	}
	planes := make([]plane, len(d.comps))
	for i := range d.comps {
		c := &d.comps[i]
		if c.quant == nil { // never scanned: libjpeg outputs the zero-coefficient (grey) block
			q := d.quant[c.tq]
			c.quant = &q
		}
		stride := c.bw * 8
		pix := make([]uint8, stride*c.bh*8)
		// Only the blocks that cover the component's real samples are needed.
		bw, bh := (c.cw+7)/8, (c.ch+7)/8
		parallelRows(bh, bw*64*8, runtime.GOMAXPROCS(0), func(lo, hi int) {
			for by := lo; by < hi; by++ {
				for bx := 0; bx < bw; bx++ {
					b := (by*c.bw + bx) * 64
					idctBlock(c.coef[b:b+64], c.quant, pix[by*8*stride+bx*8:], stride)
				}
			}
		})
		c.coef = nil
		planes[i] = plane{pix, stride, c.cw, c.ch}
	}
	dst, err := NewRGB(d.width, d.height)
	if err != nil {
		return nil, err
	}
	w := d.width
	space := d.colorSpace()
	parallelRows(d.height, w*3*8, runtime.GOMAXPROCS(0), func(lo, hi int) {
		rows := make([][]uint8, len(d.comps))
		for i := range rows {
			rows[i] = make([]uint8, w)
		}
		sums := make([]int32, w)
		for y := lo; y < hi; y++ {
			for i := range d.comps {
				c := &d.comps[i]
				upsampleRow(planes[i], d.hmax/c.h, d.vmax/c.v, y, rows[i], sums)
			}
			convertRow(space, rows, dst.Pix[y*w*3:(y+1)*w*3])
		}
	})
	return dst, nil
}

// convertRow turns one row of upsampled components into RGB (out has 3 bytes per pixel).
func convertRow(space int, rows [][]uint8, o []uint8) {
	w := len(o) / 3
	switch space {
	case jcsGray:
		for x, v := range rows[0][:w] {
			o[3*x], o[3*x+1], o[3*x+2] = v, v, v
		}
	case jcsRGB:
		for x := 0; x < w; x++ {
			o[3*x], o[3*x+1], o[3*x+2] = rows[0][x], rows[1][x], rows[2][x]
		}
	case jcsYCbCr:
		for x := 0; x < w; x++ {
			o[3*x], o[3*x+1], o[3*x+2] = yccToRGB(rows[0][x], rows[1][x], rows[2][x])
		}
	case jcsCMYK:
		// Pillow reads CMYK JPEGs as "CMYK;I" (Adobe's inverted convention): invert, then cmyk2rgb.
		for x := 0; x < w; x++ {
			o[3*x], o[3*x+1], o[3*x+2] = cmykToRGB(^rows[0][x], ^rows[1][x], ^rows[2][x], ^rows[3][x])
		}
	case jcsYCCK:
		// libjpeg's ycck_cmyk_convert (C = 255 − R etc., K kept), then as for CMYK.
		for x := 0; x < w; x++ {
			r, g, b := yccToRGB(rows[0][x], rows[1][x], rows[2][x])
			o[3*x], o[3*x+1], o[3*x+2] = cmykToRGB(r, g, b, ^rows[3][x])
		}
	}
}

const (
	jcsGray = iota
	jcsRGB
	jcsYCbCr
	jcsCMYK
	jcsYCCK
)

// colorSpace is libjpeg's guess of the stored colour space.
func (d *jpegDecoder) colorSpace() int {
	switch len(d.comps) {
	case 1:
		return jcsGray
	case 3:
		switch {
		case d.jfif:
			return jcsYCbCr
		case d.adobe:
			if d.adobeXform == 0 {
				return jcsRGB
			}
			return jcsYCbCr
		}
		id0, id1, id2 := d.comps[0].id, d.comps[1].id, d.comps[2].id
		if id0 == 'R' && id1 == 'G' && id2 == 'B' {
			return jcsRGB
		}
		return jcsYCbCr
	}
	if d.adobe && d.adobeXform == 0 {
		return jcsCMYK
	}
	if d.adobe {
		return jcsYCCK
	}
	return jcsCMYK
}

// jpegConfig reads the frame size from the first SOF segment, without decoding anything.
func jpegConfig(data []byte) (image.Config, error) {
	if len(data) < 2 || data[0] != 0xff || data[1] != 0xd8 {
		return image.Config{}, errors.New("missing SOI marker")
	}
	pos := 2
	for {
		for pos < len(data) && data[pos] != 0xff {
			pos++
		}
		for pos < len(data) && data[pos] == 0xff {
			pos++
		}
		if pos >= len(data) {
			return image.Config{}, errJPEGTruncated
		}
		m := data[pos]
		pos++
		if m == 0 || m == 0xd8 || m == 0x01 || (m >= 0xd0 && m <= 0xd7) {
			continue
		}
		if m == 0xd9 || m == 0xda {
			return image.Config{}, errors.New("no frame header before scan data")
		}
		if pos+2 > len(data) {
			return image.Config{}, errJPEGTruncated
		}
		n := int(binary.BigEndian.Uint16(data[pos:]))
		if n < 2 || pos+n > len(data) {
			return image.Config{}, errJPEGTruncated
		}
		if m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc {
			if n < 8 {
				return image.Config{}, errors.New("bad SOF segment")
			}
			s := data[pos+2:]
			return image.Config{
				ColorModel: color.RGBAModel,
				Height:     int(binary.BigEndian.Uint16(s[1:])),
				Width:      int(binary.BigEndian.Uint16(s[3:])),
			}, nil
		}
		pos += n
	}
}
