package wal2json

import (
	"bytes"
	"errors"
	"fmt"
)

// DecodeV1Chunk decodes one message of wal2json format-version 1 written
// with write-in-chunks: a transaction arrives as its header
// (`{"timestamp":…,"change":[`), one message per change (each after the
// first led by a comma), and `]}`. Reading chunk by chunk keeps memory flat
// however large the transaction; the whole document is never assembled.
// Chunks become the same Change values format 2 gives: Begin, the changes,
// Commit.
func DecodeV1Chunk(data []byte, c *Change) error {
	c.reset(len(data))
	trimmed := bytes.TrimSpace(data)
	switch {
	case bytes.HasPrefix(trimmed, []byte(`{"change":[`)) && bytes.HasSuffix(trimmed, []byte("]}")):
		// A whole document in one chunk: a non-transactional logical
		// message (pg_logical_emit_message(false, …)), which carries no
		// row change.
		c.Action = ActionMessage
		return nil
	case bytes.Equal(trimmed, []byte("]}")):
		c.Action = ActionCommit
		return nil
	case bytes.HasSuffix(trimmed, []byte(`"change":[`)):
		// The header: close it to read it as an object.
		header := append(append([]byte(nil), trimmed...), ']', '}')
		c.Action = ActionBegin
		s := scanner{data: header}
		return wrapV1(s.object(func(key []byte) error {
			if string(key) == "timestamp" {
				return s.text(c, &c.Timestamp)
			}
			return s.skip()
		}))
	}
	if len(trimmed) > 0 && trimmed[0] == ',' {
		trimmed = trimmed[1:]
	}
	s := scanner{data: trimmed}
	var names, typeNames []string
	var typeOIDs, oldTypeOIDs []uint32
	var values []Column
	var oldNames, oldTypes []string
	var oldValues []Column
	err := s.object(func(key []byte) error {
		switch string(key) {
		case "kind":
			v, err := s.str(c)
			if err != nil {
				return err
			}
			switch string(v) {
			case "insert":
				c.Action = ActionInsert
			case "update":
				c.Action = ActionUpdate
			case "delete":
				c.Action = ActionDelete
			case "truncate":
				c.Action = ActionTruncate
			case "message":
				c.Action = ActionMessage
			default:
				return fmt.Errorf("unknown kind %q", v)
			}
		case "schema":
			return s.text(c, &c.Schema)
		case "table":
			return s.text(c, &c.Table)
		case "columnnames":
			return s.strings(c, &names)
		case "columntypes":
			return s.strings(c, &typeNames)
		case "columntypeoids":
			return s.oids(c, &typeOIDs)
		case "columnvalues":
			return s.values(c, &values)
		case "oldkeys":
			return s.object(func(key []byte) error {
				switch string(key) {
				case "keynames":
					return s.strings(c, &oldNames)
				case "keytypes":
					return s.strings(c, &oldTypes)
				case "keytypeoids":
					return s.oids(c, &oldTypeOIDs)
				case "keyvalues":
					return s.values(c, &oldValues)
				}
				return s.skip()
			})
		default:
			return s.skip()
		}
		return nil
	})
	if err == nil {
		if s.skipSpace(); s.i != len(s.data) {
			err = errors.New("trailing data")
		}
	}
	if err == nil && c.Action == 0 {
		err = errors.New(`no "kind"`)
	}
	if err != nil {
		return wrapV1(err)
	}
	if c.Columns, err = zipColumns(c.Columns, names, typeNames, typeOIDs, values); err != nil {
		return wrapV1(err)
	}
	c.Identity, err = zipColumns(c.Identity, oldNames, oldTypes, oldTypeOIDs, oldValues)
	return wrapV1(err)
}

func wrapV1(err error) error {
	if err != nil {
		return fmt.Errorf("wal2json format 1 message: %w", err)
	}
	return nil
}

// zipColumns joins format 1's parallel name, type and value arrays.
func zipColumns(dst []Column, names, typeNames []string, typeOIDs []uint32, values []Column) ([]Column, error) {
	if len(values) != len(names) || len(typeNames) != 0 && len(typeNames) != len(names) ||
		len(typeOIDs) != 0 && len(typeOIDs) != len(names) {
		return dst, fmt.Errorf("%d column names, %d types, %d type OIDs, %d values", len(names), len(typeNames), len(typeOIDs), len(values))
	}
	for i, v := range values {
		v.Name = names[i]
		if len(typeNames) > 0 {
			v.TypeName = typeNames[i]
		}
		if len(typeOIDs) > 0 {
			v.TypeOID = typeOIDs[i]
		}
		dst = append(dst, v)
	}
	return dst, nil
}

// oids reads an array of type OIDs.
func (s *scanner) oids(c *Change, out *[]uint32) error {
	return s.array(func() error {
		oid, err := s.oid(c)
		*out = append(*out, oid)
		return err
	})
}

// strings reads an array of strings.
func (s *scanner) strings(c *Change, out *[]string) error {
	return s.array(func() error {
		v, err := s.str(c)
		*out = append(*out, string(v))
		return err
	})
}

// values reads an array of column values.
func (s *scanner) values(c *Change, out *[]Column) error {
	return s.array(func() error {
		v, null, err := s.value(c)
		*out = append(*out, Column{Value: v, Null: null})
		return err
	})
}
