// Package logical is the PostgreSQL side of LOG_BASED replication: slots,
// the replication connection, and the one normalised change stream that
// every output plugin's decoder (packages wal2json and pgoutput below it)
// produces. It knows nothing of Singer.
package logical

import (
	"context"
	"time"
)

// Op is what an Event reports.
type Op byte

// Event kinds. A transaction arrives as Begin, its row changes and
// truncations, and Commit.
const (
	OpBegin Op = iota + 1
	OpCommit
	OpInsert
	OpUpdate
	OpDelete
	OpTruncate
	// OpKeepalive carries the server's WAL end (LSN) and no change.
	OpKeepalive
)

// Column is one column value of a change in PostgreSQL's text output form,
// the form the copy reads too (bytea as \x hex, booleans as t/f), so that
// one formatter serves every path.
type Column struct {
	Name string
	// TypeName is the type as format_type prints it, when the plugin names
	// types (wal2json); empty otherwise.
	TypeName string
	// TypeOID is the column type's OID; 0 when the plugin did not say.
	TypeOID uint32
	// TypeMod is the column's typmod when TypeModKnown (pgoutput's Relation
	// messages carry it).
	TypeMod      int32
	TypeModKnown bool
	Value        []byte
	Null         bool
}

// Event is one normalised message of a change stream. A Source reuses its
// Event and the buffers behind it: values are valid until the next Next.
type Event struct {
	Op Op
	// LSN is the change's WAL position; for a commit, the end of its commit
	// record (the position a consumer has processed once it has the whole
	// transaction); for a keepalive, the server's WAL end.
	LSN LSN
	// CommitTime is the transaction's commit time (Begin, Commit, and the
	// changes in between when the plugin repeats it).
	CommitTime time.Time
	// Schema and Table name the changed relation as the plugin sent it (a
	// partition, or its root when the plugin publishes through the root).
	Schema, Table string
	// New is the new row (insert, update). Unchanged TOAST values are absent
	// from it.
	New []Column
	// Old is the old key, or the whole old row under REPLICA IDENTITY FULL
	// (update, delete); empty when the plugin sent none.
	Old []Column
}

// Source is a change stream: one replication connection decoded by one
// output plugin's decoder.
type Source interface {
	// Next waits up to wait for the next event; nil with a nil error when
	// nothing arrived in time or what arrived carries no event (a relation
	// description, a logical message). The event is valid until the next
	// call.
	Next(ctx context.Context, wait time.Duration) (*Event, error)
	Close(ctx context.Context) error
}

// Find returns the named column of cols, or nil.
func Find(cols []Column, name string) *Column {
	for i := range cols {
		if cols[i].Name == name {
			return &cols[i]
		}
	}
	return nil
}
