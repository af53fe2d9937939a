package engine

import (
	"bytes"
	"encoding/json"
)

// jsonMarshal is json.Marshal without HTML escaping, as all our output is.
func jsonMarshal(v any) (json.RawMessage, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
