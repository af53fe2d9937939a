package pgoutput

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/logical"
)

// msg builds a pgoutput message by hand, as the server writes it.
type msg []byte

func (m msg) b(v byte) msg      { return append(m, v) }
func (m msg) u16(v uint16) msg  { return binary.BigEndian.AppendUint16(m, v) }
func (m msg) u32(v uint32) msg  { return binary.BigEndian.AppendUint32(m, v) }
func (m msg) u64(v uint64) msg  { return binary.BigEndian.AppendUint64(m, v) }
func (m msg) str(s string) msg  { return append(append(m, s...), 0) }
func (m msg) text(s string) msg { return append(m.b('t').u32(uint32(len(s))), s...) }

func micros(t time.Time) uint64 { return uint64(t.Sub(postgresEpoch) / time.Microsecond) }

var commitAt = time.Date(2026, 11, 30, 8, 15, 42, 123456000, time.UTC)

// relationMsg announces public.t (id int key, body text, price numeric(12,2)).
func relationMsg() msg {
	return msg{'R'}.u32(16400).str("public").str("t").b('d').u16(3).
		b(1).str("id").u32(23).u32(0xffffffff).
		b(0).str("body").u32(25).u32(0xffffffff).
		b(0).str("price").u32(1700).u32(12<<16 | 2 + 4)
}

func TestDecode(t *testing.T) {
	d := NewDecoder()
	ev, err := d.Decode(msg{'B'}.u64(0x1000).u64(micros(commitAt)).u32(77), 0x900)
	if err != nil || ev.Op != logical.OpBegin || !ev.CommitTime.Equal(commitAt) || ev.LSN != 0x900 {
		t.Fatalf("begin: %+v %v", ev, err)
	}
	if ev, err := d.Decode(relationMsg(), 0x910); ev != nil || err != nil {
		t.Fatalf("relation: %+v %v", ev, err)
	}
	ev, err = d.Decode(msg{'I'}.u32(16400).b('N').u16(3).text("1").b('n').text("12.50"), 0x920)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Op != logical.OpInsert || ev.Schema != "public" || ev.Table != "t" || len(ev.New) != 3 || len(ev.Old) != 0 {
		t.Fatalf("insert: %+v", ev)
	}
	if c := ev.New[2]; c.Name != "price" || string(c.Value) != "12.50" || c.TypeOID != 1700 || !c.TypeModKnown || c.TypeMod != 12<<16|2+4 {
		t.Fatalf("price: %+v", c)
	}
	if !ev.New[1].Null || ev.New[1].Name != "body" {
		t.Fatalf("body: %+v", ev.New[1])
	}
	// An update of the key with an unchanged TOAST value: the old key tuple
	// holds only the key; the unchanged value is absent from the new row.
	ev, err = d.Decode(msg{'U'}.u32(16400).b('K').u16(3).text("1").b('n').b('n').b('N').u16(3).text("2").b('u').text("13.00"), 0x930)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Op != logical.OpUpdate || len(ev.Old) != 1 || ev.Old[0].Name != "id" || string(ev.Old[0].Value) != "1" {
		t.Fatalf("update old: %+v", ev.Old)
	}
	if len(ev.New) != 2 || ev.New[0].Name != "id" || ev.New[1].Name != "price" || logical.Find(ev.New, "body") != nil {
		t.Fatalf("update new: %+v", ev.New)
	}
	// Every new value an unchanged TOAST value: an empty new row, no error.
	ev, err = d.Decode(msg{'U'}.u32(16400).b('K').u16(3).text("2").b('n').b('n').b('N').u16(3).b('u').b('u').b('u'), 0x935)
	if err != nil || ev.Op != logical.OpUpdate || len(ev.New) != 0 || len(ev.Old) != 1 {
		t.Fatalf("update of unchanged values only: %+v %v", ev, err)
	}
	// REPLICA IDENTITY FULL: the whole old row, nulls included.
	ev, err = d.Decode(msg{'D'}.u32(16400).b('O').u16(3).text("2").b('n').text(""), 0x940)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Op != logical.OpDelete || len(ev.Old) != 3 || !ev.Old[1].Null || ev.Old[2].Value == nil || len(ev.Old[2].Value) != 0 {
		t.Fatalf("delete: %+v", ev)
	}
	// One TRUNCATE of two tables: two events.
	if _, err := d.Decode(msg{'R'}.u32(16401).str("").str("u").b('f').u16(0), 0x945); err != nil {
		t.Fatal(err)
	}
	ev, err = d.Decode(msg{'T'}.u32(2).b(0).u32(16400).u32(16401), 0x950)
	if err != nil || ev.Op != logical.OpTruncate || ev.Table != "t" {
		t.Fatalf("truncate 1: %+v %v", ev, err)
	}
	ev, err = d.More()
	if err != nil || ev == nil || ev.Op != logical.OpTruncate || ev.Schema != "pg_catalog" || ev.Table != "u" || ev.LSN != 0x950 {
		t.Fatalf("truncate 2: %+v %v", ev, err)
	}
	if ev, err := d.More(); ev != nil || err != nil {
		t.Fatalf("a third truncate: %+v %v", ev, err)
	}
	if ev, err := d.Decode(msg{'M'}.b(1).u64(0x955).str("prefix").u32(3).b('a').b('b').b('c'), 0x955); ev != nil || err != nil {
		t.Fatalf("logical message: %+v %v", ev, err)
	}
	ev, err = d.Decode(msg{'C'}.b(0).u64(0x1000).u64(0x1030).u64(micros(commitAt)), 0x1000)
	if err != nil || ev.Op != logical.OpCommit || ev.LSN != 0x1030 || !ev.CommitTime.Equal(commitAt) {
		t.Fatalf("commit: %+v %v", ev, err)
	}
}

func TestDecodeErrors(t *testing.T) {
	for name, m := range map[string]msg{
		"empty":                {},
		"unknown type":         {'Z'},
		"short begin":          msg{'B'}.u64(1),
		"unknown relation":     msg{'I'}.u32(99).b('N').u16(0),
		"short tuple":          append(relationMsg(), msg{'I'}.u32(16400).b('N').u16(3).text("1")...),
		"value too long":       msg{'I'}.u32(16400).b('N').u16(3).b('t').u32(1000),
		"binary value":         msg{'I'}.u32(16400).b('N').u16(3).b('b').u32(1).b(1),
		"insert without a row": msg{'I'}.u32(16400),
		"two new rows":         msg{'U'}.u32(16400).b('N').u16(3).b('u').b('u').b('u').b('N').u16(3).b('u').b('u').b('u'),
		"old row after new":    msg{'U'}.u32(16400).b('N').u16(3).b('u').b('u').b('u').b('O').u16(3).b('u').b('u').b('u'),
		"trailing bytes":       msg{'C'}.b(0).u64(1).u64(2).u64(3).b(9),
		"unterminated":         msg{'R'}.u32(1).str("public").b('t'),
	} {
		d := NewDecoder()
		if _, err := d.Decode(relationMsg(), 1); err != nil {
			t.Fatal(err)
		}
		if name == "short tuple" {
			m = m[len(relationMsg()):]
		}
		if ev, err := d.Decode(m, 2); err == nil {
			t.Errorf("%s: no error, event %+v", name, ev)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(relationMsg()))
	f.Add([]byte(msg{'I'}.u32(16400).b('N').u16(3).text("1").b('n').text("12.50")))
	f.Add([]byte(msg{'U'}.u32(16400).b('K').u16(3).text("1").b('n').b('n').b('N').u16(3).text("2").b('u').text("1")))
	f.Add([]byte(msg{'T'}.u32(1).b(0).u32(16400)))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder()
		if _, err := d.Decode(relationMsg(), 1); err != nil {
			t.Fatal(err)
		}
		ev, err := d.Decode(data, 2)
		if err != nil {
			return
		}
		for ev != nil {
			for _, cols := range [][]logical.Column{ev.New, ev.Old} {
				if len(cols) > 3 {
					t.Fatalf("%d columns from a relation of 3", len(cols))
				}
				for _, c := range cols {
					if c.Null && c.Value != nil {
						t.Fatalf("column %s is null and has a value", c.Name)
					}
					if c.Name != "id" && c.Name != "body" && c.Name != "price" {
						t.Fatalf("column %q is not the relation's", c.Name)
					}
				}
			}
			if ev, err = d.More(); err != nil {
				return
			}
		}
	})
}

func BenchmarkDecodeUpdate(b *testing.B) {
	d := NewDecoder()
	if _, err := d.Decode(relationMsg(), 1); err != nil {
		b.Fatal(err)
	}
	m := msg{'U'}.u32(16400).b('N').u16(3).text("123456").text("a body of a few dozen bytes, as rows have").text("12345.67")
	b.ReportAllocs()
	b.SetBytes(int64(len(m)))
	for b.Loop() {
		if _, err := d.Decode(m, 2); err != nil {
			b.Fatal(err)
		}
	}
}
