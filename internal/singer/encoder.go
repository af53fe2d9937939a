package singer

import (
	"strconv"
	"time"

	"github.com/tap-postgres/tap-postgres/internal/types"
)

// RecordEncoder builds RECORD lines for one stream by appending precomputed
// pieces into the caller's buffer: no maps and no reflection per row. Values
// are appended by the caller (types.Type.AppendJSON) between Field calls.
type RecordEncoder struct {
	head []byte   // {"type":"RECORD","stream":"S","record":{
	keys [][]byte // "col": for each column
	tail []byte   // },"version":V,"time_extracted":"T"}\n
	// version and timeExtracted make up tail.
	version       int64
	timeExtracted time.Time
}

// NewRecordEncoder prepares an encoder for the named columns.
func NewRecordEncoder(stream string, columns []string, version int64) *RecordEncoder {
	e := &RecordEncoder{version: version}
	e.head = append(e.head, `{"type":"RECORD","stream":`...)
	e.head = types.AppendString(e.head, stream)
	e.head = append(e.head, `,"record":{`...)
	e.keys = make([][]byte, len(columns))
	for i, c := range columns {
		k := types.AppendString(nil, c)
		e.keys[i] = append(k, ':')
	}
	e.SetTimeExtracted(time.Time{})
	return e
}

// SetTimeExtracted sets time_extracted for the records that follow. Callers
// refresh it per batch rather than per row.
func (e *RecordEncoder) SetTimeExtracted(t time.Time) {
	e.timeExtracted = t
	e.rebuildTail()
}

// SetVersion sets the table version the records that follow belong to.
func (e *RecordEncoder) SetVersion(v int64) {
	e.version = v
	e.rebuildTail()
}

func (e *RecordEncoder) rebuildTail() {
	e.tail = append(e.tail[:0], `},"version":`...)
	e.tail = strconv.AppendInt(e.tail, e.version, 10)
	if !e.timeExtracted.IsZero() {
		e.tail = append(e.tail, `,"time_extracted":"`...)
		e.tail = e.timeExtracted.UTC().AppendFormat(e.tail, "2006-01-02T15:04:05.000000Z")
		e.tail = append(e.tail, '"')
	}
	e.tail = append(e.tail, "}\n"...)
}

// Begin starts a record.
func (e *RecordEncoder) Begin(dst []byte) []byte { return append(dst, e.head...) }

// Field appends the key of column i; the caller appends its value next.
// Columns may be skipped (a delete carries only its key columns).
func (e *RecordEncoder) Field(dst []byte, i int) []byte {
	if dst[len(dst)-1] != '{' {
		dst = append(dst, ',')
	}
	return append(dst, e.keys[i]...)
}

// Key is column i's `"name":` prefix.
func (e *RecordEncoder) Key(i int) []byte { return e.keys[i] }

// End finishes the record line, newline included.
func (e *RecordEncoder) End(dst []byte) []byte { return append(dst, e.tail...) }
