package logical

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// statusInterval keeps standby status updates well under the 10 s the
// contract allows and under wal_sender_timeout's 60 s default.
const statusInterval = 5 * time.Second

// StreamConfig says where to stream from and what to acknowledge.
type StreamConfig struct {
	Slot  string
	Start LSN
	// Ack is the only position ever confirmed: what the target had durably
	// committed when the run started. Nothing this run writes raises it.
	Ack        LSN
	PluginArgs []string
	Clock      func() time.Time
}

// Stream is one replication connection streaming a slot.
type Stream struct {
	conn       *pgconn.PgConn
	ack        LSN
	clock      func() time.Time
	lastStatus time.Time
}

// MessageKind tells data from keepalives.
type MessageKind int

const (
	// KindNone: nothing arrived before the receive deadline.
	KindNone MessageKind = iota
	KindData
	KindKeepalive
)

// Message is what one Receive got.
type Message struct {
	Kind MessageKind
	// WALStart is a data message's WAL position (for a commit: the end of
	// its commit record).
	WALStart LSN
	// ServerWALEnd is the server's position when it sent the message.
	ServerWALEnd LSN
	Data         []byte
}

// StartStream opens a replication connection and starts streaming the slot.
// The acknowledgement is sent at once, so the slot reflects what the target
// holds within moments of the start.
func StartStream(ctx context.Context, cfg *pgconn.Config, sc StreamConfig) (*Stream, error) {
	conn, err := pgconn.ConnectConfig(ctx, replicationConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("open replication connection: %w", err)
	}
	err = pglogrepl.StartReplication(ctx, conn, sc.Slot, sc.Start,
		pglogrepl.StartReplicationOptions{Mode: pglogrepl.LogicalReplication, PluginArgs: sc.PluginArgs})
	if err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("start replication from slot %s at %s: %w", sc.Slot, sc.Start, err)
	}
	s := &Stream{conn: conn, ack: sc.Ack, clock: sc.Clock}
	// Asking for a reply gets a keepalive with the server's position at once,
	// which is how an idle stream learns that it is caught up.
	if err := s.sendStatus(ctx, true); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return s, nil
}

// PluginArg formats one START_REPLICATION plugin option.
func PluginArg(name, value string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `" '` + strings.ReplaceAll(value, `'`, `''`) + `'`
}

// sendStatus confirms the acknowledged position. Write, flush and apply are
// all set to it explicitly: left zero, flush would copy the write position.
func (s *Stream) sendStatus(ctx context.Context, replyRequested bool) error {
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: s.ack,
		WALFlushPosition: s.ack,
		WALApplyPosition: s.ack,
		ClientTime:       s.clock(),
		ReplyRequested:   replyRequested,
	})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	s.lastStatus = s.clock()
	return nil
}

// Receive waits up to wait for one message, sending status updates when due
// or asked for. Data is valid until the next Receive.
func (s *Stream) Receive(ctx context.Context, wait time.Duration) (Message, error) {
	if s.clock().Sub(s.lastStatus) >= statusInterval {
		if err := s.sendStatus(ctx, false); err != nil {
			return Message{}, err
		}
	}
	deadline := s.lastStatus.Add(statusInterval)
	if until := s.clock().Add(wait); until.Before(deadline) {
		deadline = until
	}
	rctx, cancel := context.WithDeadline(ctx, deadline)
	raw, err := s.conn.ReceiveMessage(rctx)
	cancel()
	if err != nil {
		if pgconn.Timeout(err) && ctx.Err() == nil {
			// Quiet: ask where the server is, so stop rules see progress.
			return Message{}, s.sendStatus(ctx, true)
		}
		return Message{}, fmt.Errorf("receive from replication stream: %w", err)
	}
	switch msg := raw.(type) {
	case *pgproto3.CopyData:
		if len(msg.Data) == 0 {
			return Message{}, errors.New("empty replication message")
		}
		switch msg.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
			if err != nil {
				return Message{}, fmt.Errorf("parse keepalive: %w", err)
			}
			if ka.ReplyRequested {
				if err := s.sendStatus(ctx, false); err != nil {
					return Message{}, err
				}
			}
			return Message{Kind: KindKeepalive, ServerWALEnd: ka.ServerWALEnd}, nil
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
			if err != nil {
				return Message{}, fmt.Errorf("parse XLogData: %w", err)
			}
			return Message{Kind: KindData, WALStart: xld.WALStart, ServerWALEnd: xld.ServerWALEnd, Data: xld.WALData}, nil
		}
		return Message{}, fmt.Errorf("unknown replication message type %q", msg.Data[0])
	case *pgproto3.ErrorResponse:
		return Message{}, fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(msg))
	case *pgproto3.CopyDone:
		return Message{}, errors.New("server ended the replication stream")
	}
	return Message{}, nil
}

// Close ends streaming and the connection.
func (s *Stream) Close(ctx context.Context) error {
	return s.conn.Close(ctx)
}
