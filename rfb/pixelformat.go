package rfb

import (
	"encoding/binary"
	"fmt"
)

// PixelFormat is the RFB PIXEL_FORMAT structure (RFC 6143 §7.4): how the
// server encodes one pixel.
type PixelFormat struct {
	// BitsPerPixel is 8, 16 or 32.
	BitsPerPixel uint8
	// Depth is the number of useful bits in a pixel value.
	Depth uint8
	// BigEndian says multi-byte pixel values are sent most significant
	// byte first.
	BigEndian bool
	// TrueColour says pixel values hold red, green and blue intensities;
	// otherwise they index a colour map the server sets with
	// SetColourMapEntries.
	TrueColour bool
	// RedMax, GreenMax and BlueMax are the largest intensity of each
	// colour (2^n - 1), and RedShift, GreenShift and BlueShift how far it
	// is shifted left in the pixel value.
	RedMax, GreenMax, BlueMax       uint16
	RedShift, GreenShift, BlueShift uint8
}

// pixelFormatLength is the wire size of PIXEL_FORMAT.
const pixelFormatLength = 16

// PixelFormatRGBA returns 32-bit little-endian true colour with red in
// the lowest byte: LayoutRGBX.PixelFormat(), the memory order of
// image.RGBA (with the fourth byte as padding, not alpha).
func PixelFormatRGBA() PixelFormat { return LayoutRGBX.PixelFormat() }

// BytesPerPixel returns BitsPerPixel / 8.
func (pf PixelFormat) BytesPerPixel() int { return int(pf.BitsPerPixel) / 8 }

// Validate checks that pf is a format a client can decode: 8, 16 or 32
// bits per pixel, a depth no larger, and, for true colour, colour
// maxima of the form 2^n - 1 with the shifted values inside the pixel.
func (pf PixelFormat) Validate() error {
	switch pf.BitsPerPixel {
	case 8, 16, 32:
	default:
		return protocolError("pixel format has %d bits per pixel, not 8, 16 or 32", pf.BitsPerPixel)
	}
	if pf.Depth == 0 || pf.Depth > pf.BitsPerPixel {
		return protocolError("pixel format has depth %d with %d bits per pixel", pf.Depth, pf.BitsPerPixel)
	}
	if !pf.TrueColour {
		return nil
	}
	for _, c := range []struct {
		name  string
		max   uint16
		shift uint8
	}{{"red", pf.RedMax, pf.RedShift}, {"green", pf.GreenMax, pf.GreenShift}, {"blue", pf.BlueMax, pf.BlueShift}} {
		if c.max == 0 || c.max&(c.max+1) != 0 {
			return protocolError("pixel format %s maximum %d is not 2^n-1", c.name, c.max)
		}
		if int(c.shift)+bitLen(c.max) > int(pf.BitsPerPixel) {
			return protocolError("pixel format %s (max %d, shift %d) does not fit in %d bits", c.name, c.max, c.shift, pf.BitsPerPixel)
		}
	}
	return nil
}

func bitLen(v uint16) int {
	n := 0
	for ; v != 0; v >>= 1 {
		n++
	}
	return n
}

// String describes pf briefly, e.g. "32bpp depth 24 LE true colour
// R255<<16 G255<<8 B255<<0".
func (pf PixelFormat) String() string {
	endian := "LE"
	if pf.BigEndian {
		endian = "BE"
	}
	if !pf.TrueColour {
		return fmt.Sprintf("%dbpp depth %d %s colour map", pf.BitsPerPixel, pf.Depth, endian)
	}
	return fmt.Sprintf("%dbpp depth %d %s true colour R%d<<%d G%d<<%d B%d<<%d", pf.BitsPerPixel, pf.Depth, endian,
		pf.RedMax, pf.RedShift, pf.GreenMax, pf.GreenShift, pf.BlueMax, pf.BlueShift)
}

// AppendBinary appends the 16-byte wire form of pf.
func (pf PixelFormat) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, pf.BitsPerPixel, pf.Depth, boolByte(pf.BigEndian), boolByte(pf.TrueColour))
	b = binary.BigEndian.AppendUint16(b, pf.RedMax)
	b = binary.BigEndian.AppendUint16(b, pf.GreenMax)
	b = binary.BigEndian.AppendUint16(b, pf.BlueMax)
	b = append(b, pf.RedShift, pf.GreenShift, pf.BlueShift, 0, 0, 0)
	return b, nil
}

// UnmarshalBinary parses the 16-byte wire form. Flags follow the
// "non-zero is true" rule, so 0xFF (sent by x11vnc) reads as true.
func (pf *PixelFormat) UnmarshalBinary(b []byte) error {
	if len(b) != pixelFormatLength {
		return protocolError("pixel format of %d bytes, want %d", len(b), pixelFormatLength)
	}
	*pf = PixelFormat{
		BitsPerPixel: b[0],
		Depth:        b[1],
		BigEndian:    b[2] != 0,
		TrueColour:   b[3] != 0,
		RedMax:       binary.BigEndian.Uint16(b[4:]),
		GreenMax:     binary.BigEndian.Uint16(b[6:]),
		BlueMax:      binary.BigEndian.Uint16(b[8:]),
		RedShift:     b[10],
		GreenShift:   b[11],
		BlueShift:    b[12],
	}
	return nil
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}
