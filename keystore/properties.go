package keystore

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
)

// Properties is a Java .properties file (agent.properties) that can be
// edited without disturbing it: Bytes returns the input byte for byte
// unless Set changed something, and Set rewrites only the line of the key
// it sets, keeping every other line, comment and blank line, their order
// and their line endings.
//
// Parsing follows java.util.Properties.load: natural lines end with \n, \r
// or \r\n; # and ! start comments; a line ending in an odd number of
// backslashes continues on the next; keys end at an unescaped '=', ':' or
// white space; \t \n \r \f and \uXXXX are escapes. The bytes are read as
// ISO-8859-1, as Properties.load(InputStream) does.
type Properties struct {
	lines []propLine
}

// propLine is one logical line: raw holds its bytes, line terminators
// included; key is set for key-value lines.
type propLine struct {
	raw   []byte
	key   string
	value []byte
	entry bool
}

// ParseProperties parses data. It fails only where Java fails (a malformed
// \uXXXX escape) or when data exceeds MaxPropertiesSize.
func ParseProperties(data []byte) (*Properties, error) {
	if len(data) > MaxPropertiesSize {
		return nil, fmt.Errorf("%w: properties of %d bytes, limit %d", ErrTooLarge, len(data), MaxPropertiesSize)
	}
	p := &Properties{}
	rest := data
	for len(rest) > 0 {
		start := rest
		var logical []byte
		first, cont := true, false
		n := 0
		for {
			content, next := naturalLine(rest)
			n += len(rest) - len(next)
			rest = next
			if cont {
				content = bytes.TrimLeft(content, " \t\f")
			}
			if first {
				trimmed := bytes.TrimLeft(content, " \t\f")
				if len(trimmed) == 0 || trimmed[0] == '#' || trimmed[0] == '!' {
					break // blank or comment: never continued
				}
			}
			first = false
			if odd := trailingBackslashes(content)%2 == 1; odd && len(rest) > 0 {
				logical = append(logical, content[:len(content)-1]...)
				cont = true
				continue
			} else if odd {
				content = content[:len(content)-1]
			}
			logical = append(logical, content...)
			break
		}
		line := propLine{raw: start[:n:n]}
		if logical != nil {
			key, value, err := splitProperty(logical)
			if err != nil {
				return nil, err
			}
			line.key, line.value, line.entry = key, value, true
		}
		p.lines = append(p.lines, line)
	}
	return p, nil
}

// LoadProperties reads and parses the properties file at path. A missing
// file is an empty Properties and no error, so that Setup can create it.
func LoadProperties(ctx context.Context, path string) (*Properties, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := readFileLimited(path, MaxPropertiesSize)
	if isNotExist(err) {
		return &Properties{}, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseProperties(data)
}

// naturalLine splits the first natural line off data: its content without
// the terminator, and what follows the terminator.
func naturalLine(data []byte) (content, rest []byte) {
	for i, c := range data {
		switch c {
		case '\n':
			return data[:i], data[i+1:]
		case '\r':
			if i+1 < len(data) && data[i+1] == '\n' {
				return data[:i], data[i+2:]
			}
			return data[:i], data[i+1:]
		}
	}
	return data, nil
}

func trailingBackslashes(b []byte) int {
	n := 0
	for i := len(b) - 1; i >= 0 && b[i] == '\\'; i-- {
		n++
	}
	return n
}

// splitProperty splits a logical line into its unescaped key and value.
func splitProperty(line []byte) (string, []byte, error) {
	line = bytes.TrimLeft(line, " \t\f")
	end := len(line)
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c == '\\' {
			i++
			continue
		}
		if c == '=' || c == ':' || c == ' ' || c == '\t' || c == '\f' {
			end = i
			break
		}
	}
	rawKey, rest := line[:end], line[end:]
	rest = bytes.TrimLeft(rest, " \t\f")
	if len(rest) > 0 && (rest[0] == '=' || rest[0] == ':') {
		rest = bytes.TrimLeft(rest[1:], " \t\f")
	}
	key, err := unescapeProperty(rawKey)
	if err != nil {
		return "", nil, err
	}
	value, err := unescapeProperty(rest)
	if err != nil {
		return "", nil, err
	}
	return string(key), value, nil
}

// unescapeProperty decodes the escapes of a key or value into UTF-8.
func unescapeProperty(b []byte) ([]byte, error) {
	if bytes.IndexByte(b, '\\') < 0 && isASCII(b) {
		return bytes.Clone(b), nil
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '\\' {
			out = appendLatin1(out, c)
			continue
		}
		i++
		if i == len(b) {
			break // a lone trailing backslash is dropped, as Java does
		}
		switch c = b[i]; c {
		case 't':
			out = append(out, '\t')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 'f':
			out = append(out, '\f')
		case 'u':
			if i+5 > len(b) {
				return nil, fmt.Errorf("%w: malformed \\uxxxx encoding", ErrMalformedProperties)
			}
			v, err := strconv.ParseUint(string(b[i+1:i+5]), 16, 16)
			if err != nil {
				return nil, fmt.Errorf("%w: malformed \\uxxxx encoding", ErrMalformedProperties)
			}
			out = append(out, string(rune(v))...)
			i += 4
		default:
			out = appendLatin1(out, c)
		}
	}
	return out, nil
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

func appendLatin1(out []byte, c byte) []byte {
	if c < 0x80 {
		return append(out, c)
	}
	return append(out, string(rune(c))...)
}

// Lookup returns a copy of the value of key (the last occurrence wins, as
// in Java), and whether the key is present.
func (p *Properties) Lookup(key string) ([]byte, bool) {
	for i := len(p.lines) - 1; i >= 0; i-- {
		if l := p.lines[i]; l.entry && l.key == key {
			return bytes.Clone(l.value), true
		}
	}
	return nil, false
}

// Set gives key the value. The line that defines key (its last
// occurrence) is replaced, keeping its line ending; if there is none, a
// line is appended. Nothing else changes. value must be printable ASCII.
func (p *Properties) Set(key string, value []byte) error {
	if !printableASCII([]byte(key)) || key == "" || !printableASCII(value) {
		return fmt.Errorf("keystore: property %q: only printable ASCII keys and values can be set", key)
	}
	var raw []byte
	raw = append(raw, escapeProperty([]byte(key), true)...)
	raw = append(raw, '=')
	raw = append(raw, escapeProperty(value, false)...)
	for i := len(p.lines) - 1; i >= 0; i-- {
		l := &p.lines[i]
		if !l.entry || l.key != key {
			continue
		}
		l.raw = append(raw, lineEnding(l.raw)...)
		l.value = bytes.Clone(value)
		return nil
	}
	if n := len(p.lines); n > 0 {
		last := &p.lines[n-1]
		ending := lineEnding(last.raw)
		content := last.raw[:len(last.raw)-len(ending)]
		if ending == nil {
			ending = []byte("\n")
			last.raw = append(bytes.Clone(last.raw), ending...)
		}
		if last.entry && trailingBackslashes(content)%2 == 1 {
			// The last line ends in a continuation that the end of the
			// file cut short; a blank line keeps it from swallowing ours.
			// It repeats the line's own ending: a "\n" after a lone "\r"
			// would merge into one "\r\n".
			p.lines = append(p.lines, propLine{raw: bytes.Clone(ending)})
		}
	}
	p.lines = append(p.lines, propLine{raw: append(raw, '\n'), key: key, value: bytes.Clone(value), entry: true})
	return nil
}

// lineEnding returns the terminator at the end of raw, or nil.
func lineEnding(raw []byte) []byte {
	switch {
	case bytes.HasSuffix(raw, []byte("\r\n")):
		return []byte("\r\n")
	case bytes.HasSuffix(raw, []byte("\n")):
		return []byte("\n")
	case bytes.HasSuffix(raw, []byte("\r")):
		return []byte("\r")
	}
	return nil
}

func printableASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// escapeProperty escapes what Properties.load would otherwise read
// differently: backslashes, separators in keys, comment marks and leading
// spaces.
func escapeProperty(b []byte, isKey bool) []byte {
	out := make([]byte, 0, len(b))
	for i, c := range b {
		switch {
		case c == '\\', isKey && (c == '=' || c == ':' || c == ' '),
			i == 0 && (c == '#' || c == '!' || c == ' '):
			out = append(out, '\\', c)
		default:
			out = append(out, c)
		}
	}
	return out
}

// Bytes returns the file's content.
func (p *Properties) Bytes() []byte {
	n := 0
	for _, l := range p.lines {
		n += len(l.raw)
	}
	out := make([]byte, 0, n)
	for _, l := range p.lines {
		out = append(out, l.raw...)
	}
	return out
}

// Clear overwrites the values held in memory, as a best effort; the
// passphrase lives there.
func (p *Properties) Clear() {
	for i := range p.lines {
		clear(p.lines[i].value)
	}
}
