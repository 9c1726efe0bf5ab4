package libvirtconf

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Limits of what Parse accepts: libvirt reads configuration files of a
// few dozen KiB; these bound the work a hostile file can cause.
const (
	maxConfigSize     = 1 << 20 // bytes of a file
	maxListDepth      = 32      // nesting of lists
	maxCommentedLines = 64      // lines of one commented-out default
)

// Setting is one key and the value it should have.
type Setting struct {
	Key   string
	Value Value
}

// String returns the setting as a configuration line without newline.
func (s Setting) String() string { return s.Key + " = " + s.Value.String() }

// Config is a libvirt configuration file (libvirtd.conf, qemu.conf, ...)
// kept byte for byte, with an index of its settings. [Config.Set] edits it
// in place: every byte it does not have to change stays as it was.
//
// The syntax is libvirt's virconf: "key = value" statements ended by a
// line break or ';', "#" comments, values that are strings ("..." or
// '...' without escapes, or Python-style """..."""), decimal integers and
// [ ... ] lists that may span lines.
type Config struct {
	src      []byte
	settings []setting
	comments []commentLine
}

// setting is an active key = value statement; offsets index Config.src.
type setting struct {
	key              string
	value            Value
	valStart, valEnd int
}

// commentLine is a line that starts with '#' in its first column.
type commentLine struct {
	start, end int // the line, without its line break
	next       int // the start of the following line (len(src) at the end)
}

// Parse parses a libvirt configuration file. It returns a
// *SyntaxError for input libvirt would refuse, and for input it refuses
// to handle: NUL bytes, files over 1 MiB, lists nested over 32 deep.
func Parse(data []byte) (*Config, error) {
	if len(data) > maxConfigSize {
		return nil, &SyntaxError{Line: 1, Msg: fmt.Sprintf("file of %d bytes exceeds the %d-byte limit", len(data), maxConfigSize)}
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return nil, &SyntaxError{Line: 1 + bytes.Count(data[:i], []byte("\n")), Msg: "NUL byte"}
	}
	p := &parser{src: data, line: 1}
	c := &Config{src: bytes.Clone(data)}
	if err := p.parseFile(c); err != nil {
		return nil, err
	}
	return c, nil
}

// Bytes returns the file's current content.
func (c *Config) Bytes() []byte { return bytes.Clone(c.src) }

// Get returns the value of the first active setting of key, the one
// libvirt uses.
func (c *Config) Get(key string) (Value, bool) {
	for _, s := range c.settings {
		if s.key == key {
			return s.value, true
		}
	}
	return Value{}, false
}

// Keys returns the keys of the active settings, in file order, each once.
func (c *Config) Keys() []string {
	var keys []string
	for _, s := range c.settings {
		if !slices.Contains(keys, s.key) {
			keys = append(keys, s.key)
		}
	}
	return keys
}

// Set gives key the value v:
//   - if key is set, the value of every active statement of key is
//     replaced, keeping the rest of those lines (indentation, comments);
//   - otherwise, if the file has the commented default "#key = ..." (the
//     first one, which may span several "#" lines for a list), those
//     lines are replaced by "key = v";
//   - otherwise "key = v" is appended at the end.
//
// Setting a value a key already has changes nothing, so edits are
// idempotent. Set returns an error wrapping [ErrInvalidKey] or
// [ErrInvalidValue], and leaves c unchanged, when key or v cannot be
// written.
func (c *Config) Set(key string, v Value) error {
	if !validKey(key) {
		return fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	text, err := v.Marshal()
	if err != nil {
		return fmt.Errorf("%w (setting %s)", err, key)
	}
	var out []byte
	switch active := c.find(key); {
	case len(active) > 0:
		if c.allEqual(active, v) {
			return nil
		}
		out = bytes.Clone(c.src)
		for _, i := range slices.Backward(active) {
			s := c.settings[i]
			out = slices.Replace(out, s.valStart, s.valEnd, []byte(text)...)
		}
	default:
		line := []byte(key + " = " + text)
		if start, end, ok := c.commentedDefault(key); ok {
			out = slices.Replace(bytes.Clone(c.src), start, end, line...)
		} else {
			out = bytes.Clone(c.src)
			if len(out) > 0 && !isEOL(out[len(out)-1]) {
				out = append(out, '\n')
			}
			out = append(append(out, line...), '\n')
		}
	}
	edited, err := Parse(out)
	if err != nil {
		// Not reachable for a valid key and value; never write it.
		return fmt.Errorf("libvirtconf: setting %s would make the file unparsable: %w", key, err)
	}
	if got, ok := edited.Get(key); !ok || !got.Equal(v) {
		return fmt.Errorf("libvirtconf: setting %s did not take effect", key)
	}
	*c = *edited
	return nil
}

// find returns the indexes of the active settings of key.
func (c *Config) find(key string) []int {
	var idx []int
	for i, s := range c.settings {
		if s.key == key {
			idx = append(idx, i)
		}
	}
	return idx
}

func (c *Config) allEqual(idx []int, v Value) bool {
	for _, i := range idx {
		if !c.settings[i].value.Equal(v) {
			return false
		}
	}
	return true
}

// commentedDefault finds the first run of comment lines that, without
// their leading '#', is exactly one statement setting key. It returns the
// byte span to replace (the lines without the final line break).
func (c *Config) commentedDefault(key string) (start, end int, ok bool) {
	for i, cl := range c.comments {
		line := c.src[cl.start+1 : cl.end]
		rest, found := bytes.CutPrefix(line, []byte(key))
		if !found || len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t' && rest[0] != '=') {
			continue
		}
		var candidate []byte
		for n := 0; n < maxCommentedLines && i+n < len(c.comments); n++ {
			next := c.comments[i+n]
			if n > 0 && next.start != c.comments[i+n-1].next {
				break // not consecutive
			}
			candidate = append(candidate, c.src[next.start+1:next.end]...)
			candidate = append(candidate, '\n')
			parsed, err := Parse(candidate)
			if err == nil && len(parsed.settings) == 1 && parsed.settings[0].key == key {
				return cl.start, next.end, true
			}
			// Only a statement cut short (an open list or """ string)
			// can be completed by the next comment line.
			var se *SyntaxError
			if err == nil || !errors.As(err, &se) || !se.incomplete {
				break
			}
		}
	}
	return 0, 0, false
}

// Edit parses src, applies settings in order with [Config.Set] and
// returns the new content.
func Edit(src []byte, settings ...Setting) ([]byte, error) {
	c, err := Parse(src)
	if err != nil {
		return nil, err
	}
	for _, s := range settings {
		if err := c.Set(s.Key, s.Value); err != nil {
			return nil, err
		}
	}
	return c.src, nil
}

// SyntaxError is a configuration file libvirt would not parse.
type SyntaxError struct {
	File string // the file's path, if known
	Line int    // 1-based line of the error
	Msg  string // what is wrong

	incomplete bool // the input ended inside a statement
}

func (e *SyntaxError) Error() string {
	where := "config"
	if e.File != "" {
		where = e.File
	}
	return "libvirtconf: " + where + " line " + strconv.Itoa(e.Line) + ": " + e.Msg
}

// parser is a recursive-descent parser following libvirt's virconf.c.
type parser struct {
	src  []byte
	pos  int
	line int
}

func isEOL(b byte) bool   { return b == '\n' || b == '\r' }
func isBlank(b byte) bool { return b == ' ' || b == '\t' }
func isAlpha(b byte) bool { return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') }
func isDigit(b byte) bool { return b >= '0' && b <= '9' }

func validKey(key string) bool {
	if key == "" || !isAlpha(key[0]) {
		return false
	}
	for i := 1; i < len(key); i++ {
		if b := key[i]; !isAlpha(b) && !isDigit(b) && b != '_' {
			return false
		}
	}
	return true
}

func (p *parser) errorf(format string, args ...any) error {
	return &SyntaxError{Line: p.line, Msg: fmt.Sprintf(format, args...), incomplete: p.eof()}
}

func (p *parser) eof() bool { return p.pos >= len(p.src) }
func (p *parser) cur() byte { return p.src[p.pos] }

func (p *parser) next() {
	if p.src[p.pos] == '\n' {
		p.line++
	}
	p.pos++
}

func (p *parser) skipBlanks() {
	for !p.eof() && isBlank(p.cur()) {
		p.pos++
	}
}

// skipSpace skips blanks, line breaks and other ASCII white space, as
// libvirt does between statements and inside lists.
func (p *parser) skipSpace() {
	for !p.eof() {
		switch p.cur() {
		case ' ', '\t', '\n', '\r', '\v', '\f':
			p.next()
		default:
			return
		}
	}
}

func (p *parser) skipToEOL() {
	for !p.eof() && !isEOL(p.cur()) {
		p.pos++
	}
}

func (p *parser) parseFile(c *Config) error {
	for {
		p.skipSpace()
		if p.eof() {
			return nil
		}
		if p.cur() == '#' {
			start := p.pos
			p.skipToEOL()
			if start == 0 || p.src[start-1] == '\n' {
				nextLine := p.pos
				if !p.eof() && p.cur() == '\n' {
					nextLine++
				}
				c.comments = append(c.comments, commentLine{start: start, end: p.pos, next: nextLine})
			}
			continue
		}
		if err := p.parseStatement(c); err != nil {
			return err
		}
	}
}

func (p *parser) parseStatement(c *Config) error {
	keyStart := p.pos
	if !isAlpha(p.cur()) {
		return p.errorf("expecting a name, found %q", p.cur())
	}
	for !p.eof() && (isAlpha(p.cur()) || isDigit(p.cur()) || p.cur() == '_') {
		p.pos++
	}
	key := string(p.src[keyStart:p.pos])
	p.skipBlanks()
	if p.eof() || p.cur() != '=' {
		return p.errorf("expecting '=' after %s", key)
	}
	p.pos++
	p.skipBlanks()
	valStart := p.pos
	v, err := p.parseValue(0)
	if err != nil {
		return err
	}
	c.settings = append(c.settings, setting{key: key, value: v, valStart: valStart, valEnd: p.pos})
	p.skipBlanks()
	if !p.eof() && p.cur() == '#' {
		p.skipToEOL()
	}
	// Separator: end of file, a line break, or ';'.
	p.skipBlanks()
	switch {
	case p.eof(), isEOL(p.cur()):
	case p.cur() == ';':
		p.pos++
	default:
		return p.errorf("expecting a line break or ';' after the value of %s, found %q", key, p.cur())
	}
	return nil
}

func (p *parser) parseValue(depth int) (Value, error) {
	if p.eof() {
		return Value{}, p.errorf("expecting a value, found the end of the file")
	}
	switch b := p.cur(); {
	case b == '"' || b == '\'':
		s, err := p.parseString()
		return StringValue(s), err
	case b == '[':
		if depth >= maxListDepth {
			return Value{}, p.errorf("lists nested deeper than %d", maxListDepth)
		}
		return p.parseList(depth)
	case isDigit(b) || b == '-' || b == '+':
		return p.parseInt()
	default:
		return Value{}, p.errorf("expecting a value, found %q", b)
	}
}

func (p *parser) parseString() (string, error) {
	if bytes.HasPrefix(p.src[p.pos:], []byte(`"""`)) {
		p.pos += 3
		start := p.pos
		end := bytes.Index(p.src[p.pos:], []byte(`"""`))
		if end < 0 {
			p.pos = len(p.src)
			return "", p.errorf("unterminated \"\"\" string")
		}
		for p.pos < start+end {
			p.next()
		}
		p.pos += 3
		return string(p.src[start : start+end]), nil
	}
	quote := p.cur()
	p.pos++
	start := p.pos
	for !p.eof() && p.cur() != quote && !isEOL(p.cur()) {
		p.pos++
	}
	if p.eof() || p.cur() != quote {
		return "", p.errorf("unterminated string")
	}
	s := string(p.src[start:p.pos])
	p.pos++
	return s, nil
}

func (p *parser) parseInt() (Value, error) {
	start := p.pos
	if p.cur() == '-' || p.cur() == '+' {
		p.pos++
	}
	if p.eof() || !isDigit(p.cur()) {
		return Value{}, p.errorf("unterminated number")
	}
	for !p.eof() && isDigit(p.cur()) {
		p.pos++
	}
	text := string(p.src[start:p.pos])
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		// libvirt 9.0 accepts any run of digits (it reads positive
		// numbers as unsigned and does not check for overflow); keep the
		// text, which is what re-rendering needs.
		return Value{kind: KindInt, str: text}, nil
	}
	return IntValue(n), nil
}

func (p *parser) parseList(depth int) (Value, error) {
	p.pos++ // '['
	v := Value{kind: KindList}
	p.skipSpace()
	if !p.eof() && p.cur() != ']' {
		item, err := p.parseValue(depth + 1)
		if err != nil {
			return Value{}, err
		}
		v.list = append(v.list, item)
		p.skipSpace()
		for !p.eof() && p.cur() == ',' {
			p.pos++
			p.skipSpace()
			if !p.eof() && p.cur() == ']' {
				break
			}
			item, err := p.parseValue(depth + 1)
			if err != nil {
				return Value{}, err
			}
			v.list = append(v.list, item)
			p.skipSpace()
		}
	}
	if p.eof() || p.cur() != ']' {
		return Value{}, p.errorf("list is not closed with ']'")
	}
	p.pos++
	return v, nil
}

// Sentinel errors of the editor.
var (
	// ErrInvalidValue is returned for a value the configuration syntax
	// cannot hold: the zero Value, or a string with a quote, a line
	// break or a NUL.
	ErrInvalidValue = errors.New("libvirtconf: invalid value")
	// ErrInvalidKey is returned for a key that is not a letter followed
	// by letters, digits and underscores.
	ErrInvalidKey = errors.New("libvirtconf: invalid key")
)
