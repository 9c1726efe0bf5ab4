package libvirtconf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stock reads a configuration file that Debian 12's libvirt-daemon-system
// 9.0.0-4+deb12u2 installs, copied into testdata unchanged.
func stock(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		key  string
		want Value
	}{
		{name: "integer", src: "a = 1\n", key: "a", want: IntValue(1)},
		{name: "negative", src: "a=-12", key: "a", want: IntValue(-12)},
		{name: "double quotes", src: `a = "x y"`, key: "a", want: StringValue("x y")},
		{name: "single quotes", src: `a = 'say "hi"'`, key: "a", want: StringValue(`say "hi"`)},
		{name: "triple quotes", src: "a = \"\"\"two\nlines\"\"\"\n", key: "a", want: StringValue("two\nlines")},
		{name: "empty list", src: "a = [ ]", key: "a", want: ListValue()},
		{name: "list over lines", src: "a = [\n  \"x\",\n  \"y\",\n]\n", key: "a", want: StringListValue("x", "y")},
		{name: "nested list", src: "a = [[1], 2]", key: "a", want: ListValue(ListValue(IntValue(1)), IntValue(2))},
		{name: "trailing comment", src: "a = 1   # one\n", key: "a", want: IntValue(1)},
		{name: "semicolons", src: "a = 1; b = \"2\";\n", key: "b", want: StringValue("2")},
		{name: "first wins", src: "a = 1\na = 2\n", key: "a", want: IntValue(1)},
		{name: "CRLF", src: "# c\r\na = 1\r\n", key: "a", want: IntValue(1)},
		{name: "beyond int64, as libvirt accepts", src: "a = 99999999999999999999", key: "a", want: Value{kind: KindInt, str: "99999999999999999999"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.src))
			require.NoError(t, err)
			assert.Equal(t, tc.src, string(c.Bytes()))
			got, ok := c.Get(tc.key)
			require.True(t, ok)
			assert.True(t, got.Equal(tc.want), "got %s, want %s", got, tc.want)
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line      int
		msg       string
	}{
		{name: "no equals", src: "a 1", line: 1, msg: "expecting '='"},
		{name: "no value", src: "a =", line: 1, msg: "expecting a value"},
		{name: "bare word", src: "\n\na = yes", line: 3, msg: "expecting a value"},
		{name: "unterminated", src: `a = "x`, line: 1, msg: "unterminated string"},
		{name: "newline in string", src: "a = \"x\ny\"", line: 1, msg: "unterminated string"},
		{name: "unterminated triple", src: `a = """x`, line: 1, msg: "unterminated"},
		{name: "open list", src: "a = [1,\n2", line: 2, msg: "not closed"},
		{name: "two values", src: "a = 1 2", line: 1, msg: "expecting a line break"},
		{name: "name with digit first", src: "1a = 1", line: 1, msg: "expecting a name"},
		{name: "NUL", src: "a = 1\n\x00", line: 2, msg: "NUL"},
		{name: "sign only", src: "a = -", line: 1, msg: "unterminated number"},
		{name: "deep lists", src: "a = " + strings.Repeat("[", 40), line: 1, msg: "nested deeper"},
		{name: "comment in list", src: "a = [1, # one\n2]", line: 1, msg: "expecting a value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src))
			var se *SyntaxError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, tc.line, se.Line)
			assert.Contains(t, se.Msg, tc.msg)
			assert.True(t, strings.HasPrefix(err.Error(), "libvirtconf: "))
		})
	}
	big := bytes.Repeat([]byte("#\n"), maxConfigSize)
	_, err := Parse(big)
	assert.ErrorContains(t, err, "limit")
}

func TestConfigSet(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		key       string
		value     Value
		want      string
	}{
		{name: "replace keeps the comment", src: "x = 2\na  =  0   # off\n", key: "a", value: IntValue(1), want: "x = 2\na  =  1   # off\n"},
		{name: "uncomment default", src: "# prose\n#a = 0\nb = 1\n", key: "a", value: IntValue(1), want: "# prose\na = 1\nb = 1\n"},
		{name: "indented prose is not a default", src: "#   a = 0\n", key: "a", value: IntValue(1), want: "#   a = 0\na = 1\n"},
		{name: "prefix of another key", src: "#ab = 0\n", key: "a", value: IntValue(1), want: "#ab = 0\na = 1\n"},
		{name: "first of two defaults", src: "#a = 0\n#a = 2\n", key: "a", value: IntValue(1), want: "a = 1\n#a = 2\n"},
		{name: "commented list over lines", src: "#a = [\n#  \"x\",\n#]\n#b = 1\n", key: "a", value: StringListValue("y"), want: "a = [\"y\"]\n#b = 1\n"},
		{name: "append without final newline", src: "b = 1", key: "a", value: StringValue("v"), want: "b = 1\na = \"v\"\n"},
		{name: "append to empty", src: "", key: "a", value: IntValue(1), want: "a = 1\n"},
		{name: "every active statement", src: "a = 0\na = 2\n", key: "a", value: IntValue(1), want: "a = 1\na = 1\n"},
		{name: "same value changes nothing", src: "a='v'  \n", key: "a", value: StringValue("v"), want: "a='v'  \n"},
		{name: "semicolon line", src: "a = 0; b = 0\n", key: "b", value: IntValue(1), want: "a = 0; b = 1\n"},
		{name: "multi-line value", src: "a = [\n 1,\n 2\n] # c\nb = 0\n", key: "a", value: ListValue(), want: "a = [] # c\nb = 0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.src))
			require.NoError(t, err)
			require.NoError(t, c.Set(tc.key, tc.value))
			assert.Equal(t, tc.want, string(c.Bytes()))
			require.NoError(t, c.Set(tc.key, tc.value))
			assert.Equal(t, tc.want, string(c.Bytes()), "idempotent")
		})
	}
}

func TestConfigSetRefuses(t *testing.T) {
	const src = "#a = 0\n"
	for _, tc := range []struct {
		name  string
		key   string
		value Value
		err   error
	}{
		{name: "double quote", key: "a", value: StringValue(`x"y`), err: ErrInvalidValue},
		{name: "single quote", key: "a", value: StringValue(`x'y`), err: ErrInvalidValue},
		{name: "newline", key: "a", value: StringValue("x\ny = 1"), err: ErrInvalidValue},
		{name: "carriage return", key: "a", value: StringValue("x\r"), err: ErrInvalidValue},
		{name: "NUL", key: "a", value: StringValue("x\x00"), err: ErrInvalidValue},
		{name: "in a list", key: "a", value: StringListValue("ok", "no\n"), err: ErrInvalidValue},
		{name: "zero value", key: "a", value: Value{}, err: ErrInvalidValue},
		{name: "empty key", key: "", value: IntValue(1), err: ErrInvalidKey},
		{name: "key with space", key: "a b", value: IntValue(1), err: ErrInvalidKey},
		{name: "key with newline", key: "a\nb", value: IntValue(1), err: ErrInvalidKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(src))
			require.NoError(t, err)
			assert.ErrorIs(t, c.Set(tc.key, tc.value), tc.err)
			assert.Equal(t, src, string(c.Bytes()), "nothing written")
		})
	}
}

func TestValueAccessors(t *testing.T) {
	v := StringListValue("a", "b")
	ss, ok := v.Strings()
	assert.True(t, ok)
	assert.Equal(t, []string{"a", "b"}, ss)
	_, ok = ListValue(IntValue(1)).Strings()
	assert.False(t, ok)
	n, ok := BoolValue(true).Int()
	assert.True(t, ok)
	assert.Equal(t, int64(1), n)
	assert.Equal(t, `["a", "b"]`, v.String())
	assert.Equal(t, KindList, v.Kind())
	assert.False(t, IntValue(1).Equal(StringValue("1")))
}

func FuzzEdit(f *testing.F) {
	for _, name := range []string{"libvirtd.conf", "qemu.conf"} {
		f.Add(stock(f, name), "listen_tls", "x")
	}
	for _, tc := range virconfCases {
		f.Add([]byte(tc.src), "a", "v")
	}
	f.Add([]byte("#a = [\n#  \"x\",\n#]\n"), "a", "v")
	f.Add([]byte("a = 1; b = 'q'\r\n"), "b", "v\"")
	f.Add([]byte("a = \"\"\"x\ny\"\"\""), "a", "")
	f.Fuzz(func(t *testing.T, data []byte, key, value string) {
		c, err := Parse(data)
		if err != nil {
			var se *SyntaxError
			require.ErrorAs(t, err, &se)
			return
		}
		require.Equal(t, data, c.Bytes(), "a parsed file re-renders identically")
		err = c.Set(key, StringValue(value))
		if err != nil {
			if !assert.True(t, errorsIsAny(err, ErrInvalidKey, ErrInvalidValue), "unexpected error %v", err) {
				return
			}
			assert.Equal(t, data, c.Bytes(), "a refused edit writes nothing")
			assert.True(t, !validKey(key) || strings.ContainsAny(value, "\"'\n\r\x00"), "refused a writable edit: %v", err)
			return
		}
		got, ok := c.Get(key)
		require.True(t, ok)
		s, _ := got.Str()
		assert.Equal(t, value, s)
		once := c.Bytes()
		_, err = Parse(once)
		require.NoError(t, err)
		require.NoError(t, c.Set(key, StringValue(value)))
		assert.Equal(t, once, c.Bytes(), "idempotent")
	})
}

func errorsIsAny(err error, targets ...error) bool {
	for _, target := range targets {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func TestUnifiedDiff(t *testing.T) {
	a := []byte("a = 1\nb = 2\nc = 3\nd = 4\ne = 5\nf = 6\ng = 7\n")
	b := []byte("a = 1\nb = 2\nc = 30\nd = 4\ne = 5\nf = 6\ng = 70\n")
	assert.Equal(t, "--- x.conf\n+++ x.conf\n@@ -1,7 +1,7 @@\n a = 1\n b = 2\n-c = 3\n+c = 30\n d = 4\n e = 5\n f = 6\n-g = 7\n+g = 70\n", UnifiedDiff("x.conf", a, b))
	assert.Empty(t, UnifiedDiff("x.conf", a, a))
	assert.Equal(t, "--- n\n+++ n\n@@ -0,0 +1,1 @@\n+a = 1\n", UnifiedDiff("n", nil, []byte("a = 1\n")))
}
