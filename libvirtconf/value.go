package libvirtconf

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is the type of a configuration [Value].
type Kind int

// The kinds of value libvirt's configuration syntax has.
const (
	KindString Kind = iota + 1 // "text" or 'text'
	KindInt                    // 1, -3
	KindList                   // [ value, value ]
)

// Value is a libvirt configuration value: a string, an integer or a list.
// Values are built with [StringValue], [IntValue], [ListValue] and
// [StringListValue], or returned by [Config.Get]. The zero Value is
// invalid and is refused by [Config.Set].
type Value struct {
	kind Kind
	str  string // a string, or the text of an integer outside int64
	num  int64
	list []Value
}

// StringValue returns a string value. Strings holding a quote, a line
// break or a NUL cannot be written (libvirt's syntax has no escapes) and
// are refused by [Config.Set] with [ErrInvalidValue].
func StringValue(s string) Value { return Value{kind: KindString, str: s} }

// IntValue returns an integer value.
func IntValue(n int64) Value { return Value{kind: KindInt, num: n} }

// ListValue returns a list of values.
func ListValue(items ...Value) Value {
	return Value{kind: KindList, list: append([]Value{}, items...)}
}

// StringListValue returns a list of strings, such as tls_allowed_dn_list.
func StringListValue(items ...string) Value {
	v := Value{kind: KindList, list: make([]Value, 0, len(items))}
	for _, s := range items {
		v.list = append(v.list, StringValue(s))
	}
	return v
}

// BoolValue returns 1 for true and 0 for false, libvirt's booleans.
func BoolValue(b bool) Value {
	if b {
		return IntValue(1)
	}
	return IntValue(0)
}

// Kind returns the kind of v, or 0 for the zero Value.
func (v Value) Kind() Kind { return v.kind }

// Str returns the text of a string value.
func (v Value) Str() (string, bool) { return v.str, v.kind == KindString }

// Int returns the number of an integer value. It reports false for an
// integer outside the int64 range, which libvirt's parser accepts.
func (v Value) Int() (int64, bool) { return v.num, v.kind == KindInt && v.str == "" }

// Strings returns the items of a list whose items are all strings.
func (v Value) Strings() ([]string, bool) {
	if v.kind != KindList {
		return nil, false
	}
	out := make([]string, 0, len(v.list))
	for _, item := range v.list {
		s, ok := item.Str()
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// Items returns the items of a list value.
func (v Value) Items() ([]Value, bool) {
	if v.kind != KindList {
		return nil, false
	}
	return append([]Value{}, v.list...), true
}

// Equal reports whether v and w hold the same value.
func (v Value) Equal(w Value) bool {
	if v.kind != w.kind || v.str != w.str || v.num != w.num || len(v.list) != len(w.list) {
		return false
	}
	for i := range v.list {
		if !v.list[i].Equal(w.list[i]) {
			return false
		}
	}
	return true
}

// String returns v in configuration syntax, as [Config.Set] writes it.
// An unwritable value gives a Go-syntax description instead; use
// [Value.Marshal] to get the error.
func (v Value) String() string {
	s, err := v.Marshal()
	if err != nil {
		return fmt.Sprintf("<invalid %#v>", v.str)
	}
	return s
}

// Marshal returns v in configuration syntax: strings in double quotes,
// lists as ["a", "b"]. It returns an error wrapping [ErrInvalidValue] for
// the zero Value and for strings libvirt's syntax cannot hold.
func (v Value) Marshal() (string, error) {
	var b strings.Builder
	if err := v.marshal(&b, 0); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (v Value) marshal(b *strings.Builder, depth int) error {
	if depth > maxListDepth {
		return fmt.Errorf("%w: lists nested deeper than %d", ErrInvalidValue, maxListDepth)
	}
	switch v.kind {
	case KindString:
		if i := strings.IndexAny(v.str, "\"'\n\r\x00"); i >= 0 {
			return fmt.Errorf("%w: string holds %q at byte %d; libvirt's syntax has no escapes", ErrInvalidValue, v.str[i], i)
		}
		b.WriteByte('"')
		b.WriteString(v.str)
		b.WriteByte('"')
	case KindInt:
		if v.str != "" { // a parsed integer outside the int64 range
			b.WriteString(v.str)
			break
		}
		b.WriteString(strconv.FormatInt(v.num, 10))
	case KindList:
		b.WriteByte('[')
		for i, item := range v.list {
			if i > 0 {
				b.WriteString(", ")
			}
			if err := item.marshal(b, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	default:
		return fmt.Errorf("%w: zero Value", ErrInvalidValue)
	}
	return nil
}
