package imageproc

import (
	"bytes"
	"encoding/binary"
)

// Orientation returns the EXIF Orientation (1..8) recorded in an encoded image: the JPEG APP1 "Exif"
// segment, the PNG eXIf chunk, the WebP EXIF chunk, or a TIFF file's first IFD. It returns 1 (normal)
// when there is none or it cannot be read.
func Orientation(data []byte) int {
	var tiffData []byte
	switch Sniff(data) {
	case FormatJPEG:
		tiffData = jpegExif(data)
	case FormatPNG:
		tiffData = pngExif(data)
	case FormatWebP:
		tiffData = webpExif(data)
	case FormatTIFF:
		tiffData = data
	}
	if o := tiffOrientation(tiffData); o >= 1 && o <= 8 {
		return o
	}
	return 1
}

// jpegExif returns the TIFF structure inside the first APP1 "Exif\0\0" segment before the scan data.
func jpegExif(d []byte) []byte {
	p := 2
	for p+4 <= len(d) {
		if d[p] != 0xff {
			return nil
		}
		marker := d[p+1]
		if marker == 0xff { // fill byte
			p++
			continue
		}
		if marker == 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker == 0x01 {
			p += 2
			continue
		}
		if marker == 0xda || marker == 0xd9 { // start of scan / end of image
			return nil
		}
		n := int(binary.BigEndian.Uint16(d[p+2:]))
		if n < 2 || p+2+n > len(d) {
			return nil
		}
		seg := d[p+4 : p+2+n]
		if marker == 0xe1 && bytes.HasPrefix(seg, []byte("Exif\x00\x00")) {
			return seg[6:]
		}
		p += 2 + n
	}
	return nil
}

// pngExif returns the eXIf chunk's data.
func pngExif(d []byte) []byte {
	p := 8
	for p+8 <= len(d) {
		n := int(binary.BigEndian.Uint32(d[p:]))
		typ := string(d[p+4 : p+8])
		if n < 0 || n > len(d)-p-12 {
			return nil
		}
		if typ == "eXIf" {
			return d[p+8 : p+8+n]
		}
		if typ == "IEND" { // eXIf may also come after IDAT, so look up to IEND
			return nil
		}
		p += 12 + n
	}
	return nil
}

// webpExif returns the EXIF chunk's data (with an optional "Exif\0\0" prefix removed).
func webpExif(d []byte) []byte {
	p := 12
	for p+8 <= len(d) {
		n := int(binary.LittleEndian.Uint32(d[p+4:]))
		if n < 0 || n > len(d)-p-8 {
			return nil
		}
		if string(d[p:p+4]) == "EXIF" {
			c := d[p+8 : p+8+n]
			return bytes.TrimPrefix(c, []byte("Exif\x00\x00"))
		}
		p += 8 + n + n&1
	}
	return nil
}

// tiffOrientation reads tag 0x0112 of IFD0 of a TIFF structure; 0 when absent.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 0
	}
	var bo binary.ByteOrder
	switch string(t[:4]) {
	case "II*\x00":
		bo = binary.LittleEndian
	case "MM\x00*":
		bo = binary.BigEndian
	default:
		return 0
	}
	off := int64(bo.Uint32(t[4:]))
	if off < 8 || off+2 > int64(len(t)) {
		return 0
	}
	n := int64(bo.Uint16(t[off:]))
	for i := int64(0); i < n; i++ {
		e := off + 2 + 12*i
		if e+12 > int64(len(t)) {
			return 0
		}
		if bo.Uint16(t[e:]) != 0x0112 {
			continue
		}
		typ, count := bo.Uint16(t[e+2:]), bo.Uint32(t[e+4:])
		if count < 1 {
			return 0
		}
		switch typ {
		case 3: // SHORT
			return int(bo.Uint16(t[e+8:]))
		case 4: // LONG
			return int(bo.Uint32(t[e+8:]))
		case 1: // BYTE
			return int(t[e+8])
		}
		return 0
	}
	return 0
}

// Orient returns img transformed for the EXIF orientation o the way PIL.ImageOps.exif_transpose does:
// 2 mirror left-right, 3 rotate 180°, 4 mirror top-bottom, 5 transpose, 6 rotate 90° clockwise,
// 7 transverse, 8 rotate 90° counter-clockwise. Any other value returns img itself.
func Orient(img *RGB, o int) *RGB {
	if o < 2 || o > 8 || img.validate() != nil {
		return img
	}
	w, h := img.Width, img.Height
	ow, oh := w, h
	if o >= 5 {
		ow, oh = h, w
	}
	out := &RGB{Width: ow, Height: oh, Pix: make([]uint8, len(img.Pix))}
	for y := 0; y < oh; y++ {
		for x := 0; x < ow; x++ {
			// source coordinates of output pixel (x, y)
			var sx, sy int
			switch o {
			case 2:
				sx, sy = w-1-x, y
			case 3:
				sx, sy = w-1-x, h-1-y
			case 4:
				sx, sy = x, h-1-y
			case 5: // transpose
				sx, sy = y, x
			case 6: // rotate 90° clockwise (Pillow ROTATE_270)
				sx, sy = y, h-1-x
			case 7: // transverse
				sx, sy = w-1-y, h-1-x
			case 8: // rotate 90° counter-clockwise (Pillow ROTATE_90)
				sx, sy = w-1-y, x
			}
			s := (sy*w + sx) * 3
			d := (y*ow + x) * 3
			out.Pix[d], out.Pix[d+1], out.Pix[d+2] = img.Pix[s], img.Pix[s+1], img.Pix[s+2]
		}
	}
	return out
}
