package destination

import (
	"errors"

	"github.com/tap-postgres/tap-postgres/internal/jsonstr"
)

// The loaders read every record's members without building maps: a record
// is walked once, its values kept as the JSON text they arrived in.

var errBadJSON = errors.New("invalid JSON")

// eachMember calls fn with each member of the JSON object obj: the key
// decoded, the value as its raw text. Values are delimited, not validated;
// what a value must be is checked where it is used.
func eachMember(obj []byte, fn func(key, value []byte) error) error {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return errBadJSON
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return trailing(obj, i+1)
	}
	var key []byte
	for {
		if i >= len(obj) || obj[i] != '"' {
			return errBadJSON
		}
		end, err := stringEnd(obj, i)
		if err != nil {
			return err
		}
		key, err = appendUnquoted(key[:0], obj[i:end])
		if err != nil {
			return err
		}
		i = skipSpace(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return errBadJSON
		}
		i = skipSpace(obj, i+1)
		vend, err := valueEnd(obj, i)
		if err != nil {
			return err
		}
		if err := fn(key, obj[i:vend]); err != nil {
			return err
		}
		i = skipSpace(obj, vend)
		if i >= len(obj) {
			return errBadJSON
		}
		switch obj[i] {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			return trailing(obj, i+1)
		default:
			return errBadJSON
		}
	}
}

func trailing(data []byte, i int) error {
	if skipSpace(data, i) != len(data) {
		return errBadJSON
	}
	return nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string starting at data[i].
func stringEnd(data []byte, i int) (int, error) {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '\\':
			j++
		case '"':
			return j + 1, nil
		}
	}
	return 0, errBadJSON
}

// valueEnd returns the index just past the value starting at data[i].
func valueEnd(data []byte, i int) (int, error) {
	if i >= len(data) {
		return 0, errBadJSON
	}
	switch data[i] {
	case '"':
		return stringEnd(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				end, err := stringEnd(data, j)
				if err != nil {
					return 0, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errBadJSON
	}
	j := i
	for j < len(data) && data[j] != ',' && data[j] != '}' && data[j] != ']' &&
		data[j] != ' ' && data[j] != '\t' && data[j] != '\n' && data[j] != '\r' {
		j++
	}
	if j == i {
		return 0, errBadJSON
	}
	return j, nil
}

// appendUnquoted appends the contents of the JSON string quoted (quotes
// included, nothing after them) to dst, escapes decoded.
func appendUnquoted(dst, quoted []byte) ([]byte, error) {
	out, end, err := jsonstr.AppendUnquoted(dst, quoted, 0)
	if err != nil || end != len(quoted) {
		return dst, errBadJSON
	}
	return out, nil
}
