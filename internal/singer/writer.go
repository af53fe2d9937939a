// Package singer is the Singer side of the tap: messages, the record encoder,
// the catalog and state models, and the one writer that owns stdout. It knows
// no SQL.
package singer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/tap-postgres/tap-postgres/internal/types"
)

// outputBuffer is large so that records reach the pipe in big writes; the
// buffer is flushed at every STATE, so a STATE never precedes its records.
const outputBuffer = 1 << 20

// Writer writes Singer messages, one JSON object per line.
type Writer struct {
	out     *bufio.Writer
	scratch []byte
}

// NewWriter returns a Writer over w (normally stdout).
func NewWriter(w io.Writer) *Writer {
	return &Writer{out: bufio.NewWriterSize(w, outputBuffer)}
}

// WriteRecordLine writes a complete RECORD line made by a RecordEncoder.
func (w *Writer) WriteRecordLine(line []byte) error {
	_, err := w.out.Write(line)
	return err
}

// SchemaMessage announces a stream's shape.
type SchemaMessage struct {
	Stream             string   `json:"stream"`
	Schema             any      `json:"schema"`
	KeyProperties      []string `json:"key_properties"`
	BookmarkProperties []string `json:"bookmark_properties"`
}

// WriteSchema writes a SCHEMA message.
func (w *Writer) WriteSchema(m SchemaMessage) error {
	if m.KeyProperties == nil {
		m.KeyProperties = []string{}
	}
	if m.BookmarkProperties == nil {
		m.BookmarkProperties = []string{}
	}
	return w.writeJSON(struct {
		Type string `json:"type"`
		SchemaMessage
	}{"SCHEMA", m})
}

// WriteActivateVersion writes an ACTIVATE_VERSION message.
func (w *Writer) WriteActivateVersion(stream string, version int64) error {
	b := append(w.scratch[:0], `{"type":"ACTIVATE_VERSION","stream":`...)
	b = types.AppendString(b, stream)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, version, 10)
	b = append(b, "}\n"...)
	w.scratch = b
	_, err := w.out.Write(b)
	return err
}

// WriteState writes a STATE message and flushes, so that everything the
// state covers has reached the reader before the state itself.
func (w *Writer) WriteState(s *State) error {
	if err := w.writeJSON(struct {
		Type  string `json:"type"`
		Value *State `json:"value"`
	}{"STATE", s}); err != nil {
		return err
	}
	return w.Flush()
}

// WriteCatalog writes a discovered catalog as one JSON document.
func (w *Writer) WriteCatalog(c *Catalog) error {
	if err := w.writeJSONIndent(c); err != nil {
		return err
	}
	return w.Flush()
}

// Flush pushes buffered messages to the underlying writer.
func (w *Writer) Flush() error {
	if err := w.out.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

func (w *Writer) writeJSON(v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	_, err := w.out.Write(b.Bytes())
	return err
}

func (w *Writer) writeJSONIndent(v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode catalog: %w", err)
	}
	_, err := w.out.Write(b.Bytes())
	return err
}
