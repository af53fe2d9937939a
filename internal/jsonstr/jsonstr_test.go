package jsonstr

import "testing"

func TestAppendUnquoted(t *testing.T) {
	for _, c := range []struct {
		in, want string
		end      int
		ok       bool
	}{
		{`"plain" tail`, "plain", 7, true},
		{`"a\"b\\c\/\b\f\n\r\t"`, "a\"b\\c/\b\f\n\r\t", 21, true},
		{`"\u00e9\u20AC\ud83d\ude00"`, "é€😀", 26, true},
		{`"\ud800x"`, "\uFFFDx", 9, true},
		{`"\ud800\u0041"`, "\uFFFDA", 14, true},
		{`"\ud800\uZZZZ"`, "", 0, false},
		{`"\u12"`, "", 0, false},
		{`"\q"`, "", 0, false},
		{"\"a\x01\"", "", 0, false},
		{`"open`, "", 0, false},
		{`x"`, "", 0, false},
	} {
		got, end, err := AppendUnquoted(nil, []byte(c.in), 0)
		if (err == nil) != c.ok || c.ok && (string(got) != c.want || end != c.end) {
			t.Errorf("AppendUnquoted(%s) = %q, %d, %v", c.in, got, end, err)
		}
	}
}
