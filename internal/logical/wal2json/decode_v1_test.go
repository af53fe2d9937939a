package wal2json

import "testing"

func TestDecodeV1Chunk(t *testing.T) {
	var c Change
	steps := []struct {
		chunk  string
		action Action
		check  func() bool
	}{
		{`{"xid":7,"timestamp":"2024-06-01 12:00:00+00","change":[`, ActionBegin, func() bool { return c.Timestamp == "2024-06-01 12:00:00+00" }},
		{`{"kind":"insert","schema":"s","table":"t","columnnames":["id","n","s"],"columntypes":["integer","numeric","text"],"columnvalues":[1,12345678901234567890.123456789,"a\"b"]}`,
			ActionInsert, func() bool {
				return c.Schema == "s" && c.Table == "t" && len(c.Columns) == 3 && string(c.Columns[1].Value) == "12345678901234567890.123456789" &&
					c.Columns[1].TypeName == "numeric" && string(c.Columns[2].Value) == `a"b`
			}},
		{`,{"kind":"update","schema":"s","table":"t","columnnames":["id"],"columntypes":["integer"],"columnvalues":[2],"oldkeys":{"keynames":["id"],"keytypes":["integer"],"keyvalues":[1]}}`,
			ActionUpdate, func() bool {
				return string(c.Columns[0].Value) == "2" && string(c.Identity[0].Value) == "1" && c.Identity[0].Name == "id"
			}},
		{`,{"kind":"delete","schema":"s","table":"t","oldkeys":{"keynames":["id"],"keytypes":["integer"],"keyvalues":[null]}}`,
			ActionDelete, func() bool { return len(c.Columns) == 0 && c.Identity[0].Null }},
		{`]}`, ActionCommit, func() bool { return true }},
	}
	for _, st := range steps {
		if err := DecodeV1Chunk([]byte(st.chunk), &c); err != nil {
			t.Fatalf("%s: %v", st.chunk, err)
		}
		if c.Action != st.action || !st.check() {
			t.Fatalf("%s: decoded %+v", st.chunk, c)
		}
	}
	if err := DecodeV1Chunk([]byte(`{"change":[{"kind":"message","transactional":false,"prefix":"p","content":"x"}]}`), &c); err != nil || c.Action != ActionMessage {
		t.Fatalf("standalone message: %v %+v", err, c)
	}
	for _, bad := range []string{`{"kind":"insert","columnnames":["a"],"columnvalues":[]}`, `{"kind":"upsert"}`, `,`, `{"kind":"insert"} x`, `{`} {
		if err := DecodeV1Chunk([]byte(bad), &c); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzDecodeV1Chunk(f *testing.F) {
	f.Add(`{"timestamp":"2024-06-01 12:00:00+00","change":[`)
	f.Add(`,{"kind":"update","schema":"s","table":"t","columnnames":["id"],"columntypes":["integer"],"columnvalues":[2],"oldkeys":{"keynames":["id"],"keytypes":["integer"],"keyvalues":[1]}}`)
	f.Add(`]}`)
	f.Fuzz(func(t *testing.T, in string) {
		var c Change
		if err := DecodeV1Chunk([]byte(in), &c); err != nil {
			return
		}
		for _, col := range append(c.Columns, c.Identity...) {
			if col.Null && col.Value != nil {
				t.Fatalf("NULL with a value: %+v", col)
			}
		}
	})
}
