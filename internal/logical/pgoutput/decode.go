// Package pgoutput streams a slot through pgoutput, PostgreSQL's built-in
// output plugin: its options, its publication checks, and a decoder of its
// binary protocol (text-format values) into the normalised logical.Event.
package pgoutput

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/logical"
)

// relation is what a Relation message said of a table: its name and its
// columns as the following changes send them.
type relation struct {
	schema, name string
	columns      []column
}

type column struct {
	name    string
	key     bool
	typeOID uint32
	typeMod int32
}

// Decoder turns pgoutput messages into events. It keeps the relations the
// stream announced; an event's values point into the message decoded and
// are valid until the next Decode.
type Decoder struct {
	relations  map[uint32]*relation
	event      logical.Event
	commitTime time.Time
	// truncated holds the relations of the last TRUNCATE not yet returned:
	// one message names them all, the stream gives one event each.
	truncated []uint32
}

// NewDecoder returns a decoder that knows no relation yet.
func NewDecoder() *Decoder {
	return &Decoder{relations: map[uint32]*relation{}}
}

var errShort = errors.New("message too short")

// postgresEpoch is where pgoutput's timestamps count microseconds from.
var postgresEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// reader walks a message; the first failure sticks.
type reader struct {
	data []byte
	err  error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.data) < n {
		r.err = errShort
		return nil
	}
	b := r.data[:n]
	r.data = r.data[n:]
	return b
}

func (r *reader) byte() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) uint16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) uint32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) uint64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) timestamp() time.Time {
	return postgresEpoch.Add(time.Duration(int64(r.uint64())) * time.Microsecond)
}

func (r *reader) cstring() string {
	if r.err != nil {
		return ""
	}
	for i, b := range r.data {
		if b == 0 {
			s := string(r.data[:i])
			r.data = r.data[i+1:]
			return s
		}
	}
	r.err = errors.New("unterminated string")
	return ""
}

// Decode reads one message written at WAL position at. It returns nil for
// messages that carry no event (Relation, Type, Origin, logical messages).
func (d *Decoder) Decode(data []byte, at logical.LSN) (*logical.Event, error) {
	if len(data) == 0 {
		return nil, errors.New("pgoutput: empty message")
	}
	r := &reader{data: data[1:]}
	ev, err := d.decode(data[0], r, at)
	if err == nil {
		err = r.err
	}
	if err == nil && len(r.data) != 0 {
		err = errors.New("trailing data")
	}
	if err != nil {
		return nil, fmt.Errorf("pgoutput %q message: %w", data[0], err)
	}
	return ev, nil
}

func (d *Decoder) decode(kind byte, r *reader, at logical.LSN) (*logical.Event, error) {
	ev := &d.event
	switch kind {
	case 'B':
		r.uint64() // the commit's LSN; the Commit message gives its end
		d.commitTime = r.timestamp()
		r.uint32() // xid
		*ev = logical.Event{Op: logical.OpBegin, LSN: at, CommitTime: d.commitTime, New: ev.New[:0], Old: ev.Old[:0]}
		return ev, nil
	case 'C':
		r.byte() // flags
		r.uint64()
		end := r.uint64()
		commitTime := r.timestamp()
		*ev = logical.Event{Op: logical.OpCommit, LSN: logical.LSN(end), CommitTime: commitTime, New: ev.New[:0], Old: ev.Old[:0]}
		return ev, nil
	case 'R':
		return nil, d.relation(r)
	case 'Y', 'O':
		r.data = nil
		return nil, nil
	case 'M':
		// Logical messages (pg_logical_emit_message) carry no row.
		r.data = nil
		return nil, nil
	case 'I', 'U', 'D':
		return d.change(kind, r, at)
	case 'T':
		n := r.uint32()
		r.byte() // options: CASCADE, RESTART IDENTITY
		if r.err != nil {
			return nil, r.err
		}
		if uint64(n)*4 > uint64(len(r.data)) {
			return nil, errShort
		}
		d.truncated = d.truncated[:0]
		for range n {
			d.truncated = append(d.truncated, r.uint32())
		}
		ev.LSN = at
		return d.More()
	}
	return nil, errors.New("unknown message type")
}

// More returns the next event the last message holds beyond the one Decode
// returned (a TRUNCATE of several tables), or nil.
func (d *Decoder) More() (*logical.Event, error) {
	if len(d.truncated) == 0 {
		return nil, nil
	}
	id := d.truncated[0]
	d.truncated = d.truncated[1:]
	rel, err := d.lookup(id)
	if err != nil {
		return nil, err
	}
	ev := &d.event
	*ev = logical.Event{Op: logical.OpTruncate, LSN: ev.LSN, CommitTime: d.commitTime, Schema: rel.schema, Table: rel.name,
		New: ev.New[:0], Old: ev.Old[:0]}
	return ev, nil
}

func (d *Decoder) lookup(id uint32) (*relation, error) {
	rel := d.relations[id]
	if rel == nil {
		return nil, fmt.Errorf("change for relation %d before its Relation message", id)
	}
	return rel, nil
}

func (d *Decoder) relation(r *reader) error {
	id := r.uint32()
	rel := &relation{schema: r.cstring(), name: r.cstring()}
	if rel.schema == "" {
		rel.schema = "pg_catalog"
	}
	r.byte() // replica identity setting
	n := int(r.uint16())
	// Each column takes at least 10 bytes: no allocation beyond the message.
	if r.err != nil {
		return r.err
	}
	if n*10 > len(r.data) {
		return errShort
	}
	rel.columns = make([]column, n)
	for i := range rel.columns {
		c := &rel.columns[i]
		c.key = r.byte()&1 != 0
		c.name = r.cstring()
		c.typeOID = r.uint32()
		c.typeMod = int32(r.uint32())
	}
	if r.err != nil {
		return r.err
	}
	d.relations[id] = rel
	return nil
}

func (d *Decoder) change(kind byte, r *reader, at logical.LSN) (*logical.Event, error) {
	rel, err := d.lookup(r.uint32())
	if r.err != nil {
		return nil, r.err
	}
	if err != nil {
		return nil, err
	}
	ev := &d.event
	*ev = logical.Event{LSN: at, CommitTime: d.commitTime, Schema: rel.schema, Table: rel.name, New: ev.New[:0], Old: ev.Old[:0]}
	switch kind {
	case 'I':
		ev.Op = logical.OpInsert
	case 'U':
		ev.Op = logical.OpUpdate
	case 'D':
		ev.Op = logical.OpDelete
	}
	// A tuple can be empty (every value an unchanged TOAST value): what
	// tells that one came is its tag.
	var sawOld, sawNew bool
	for r.err == nil && len(r.data) > 0 {
		switch tag := r.byte(); tag {
		case 'K', 'O':
			if kind == 'I' || sawOld || sawNew {
				return nil, fmt.Errorf("unexpected %q tuple", tag)
			}
			sawOld = true
			// A key tuple carries nulls in the other columns: only the
			// key's columns are values.
			if ev.Old, err = tuple(r, rel, ev.Old, tag == 'K'); err != nil {
				return nil, err
			}
		case 'N':
			if kind == 'D' || sawNew {
				return nil, fmt.Errorf("unexpected %q tuple", tag)
			}
			sawNew = true
			if ev.New, err = tuple(r, rel, ev.New, false); err != nil {
				return nil, err
			}
			if r.err == nil && len(r.data) > 0 {
				return nil, errors.New("trailing data")
			}
		default:
			if r.err != nil {
				return nil, r.err
			}
			return nil, fmt.Errorf("unknown tuple tag %q", tag)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if kind != 'D' && !sawNew {
		return nil, errors.New("no new tuple")
	}
	if kind == 'D' && !sawOld {
		return nil, errors.New("no old tuple")
	}
	return ev, nil
}

// tuple reads TupleData into dst: text values as they are, nulls as Null,
// unchanged TOAST values ('u') left out.
func tuple(r *reader, rel *relation, dst []logical.Column, keyOnly bool) ([]logical.Column, error) {
	n := int(r.uint16())
	if r.err != nil {
		return dst, r.err
	}
	if n != len(rel.columns) {
		return dst, fmt.Errorf("tuple of %d columns for %s.%s with %d", n, rel.schema, rel.name, len(rel.columns))
	}
	for i := range n {
		c := &rel.columns[i]
		col := logical.Column{Name: c.name, TypeOID: c.typeOID, TypeMod: c.typeMod, TypeModKnown: true}
		switch kind := r.byte(); kind {
		case 'n':
			col.Null = true
		case 'u':
			continue
		case 't':
			size := r.uint32()
			if r.err == nil && uint64(size) > uint64(len(r.data)) {
				return dst, errShort
			}
			col.Value = r.take(int(size))
		default:
			if r.err != nil {
				return dst, r.err
			}
			return dst, fmt.Errorf("column %q: unknown value kind %q (binary values are not requested)", c.name, kind)
		}
		if keyOnly && !c.key {
			continue
		}
		dst = append(dst, col)
	}
	return dst, r.err
}
