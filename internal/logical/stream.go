package logical

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

const (
	// statusInterval keeps standby status updates well under the 10 s the
	// contract allows and under wal_sender_timeout's 60 s default, also
	// while the consumer is not reading.
	statusInterval = 5 * time.Second
	// blockedStatusInterval is how often status goes out while the consumer
	// is not reading: the stream is not read then either, so the server's
	// requests for a reply wait, and a wal_sender_timeout of a few seconds
	// must still see the client alive.
	blockedStatusInterval = time.Second
	// quietInterval is how long the stream may be silent before the server
	// is asked where it is, so that stop rules see an idle server's
	// progress.
	quietInterval = time.Second
	// bufferedMessages and bufferedBytes bound how far reading runs ahead of
	// a slow consumer: memory stays flat, and the server waits on the
	// connection's flow control meanwhile.
	bufferedMessages = 256
	bufferedBytes    = 32 << 20
	// keptBufferSize is the largest message buffer kept for reuse: one huge
	// value does not pin its size for the rest of the run.
	keptBufferSize = 1 << 20
)

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

// MessageKind tells data from keepalives.
type MessageKind int

const (
	// KindNone: nothing arrived before the receive deadline.
	KindNone MessageKind = iota
	KindData
	KindKeepalive
)

// Message is what one receive got.
type Message struct {
	Kind MessageKind
	// WALStart is a data message's WAL position (for a commit: the end of
	// its commit record).
	WALStart LSN
	// ServerWALEnd is the server's position when it sent the message.
	ServerWALEnd LSN
	Data         []byte
}

// Stream is one replication connection streaming a slot. A goroutine of its
// own owns the connection: it reads ahead into a bounded queue and keeps
// standby status updates going while the consumer is blocked (a target
// flushing a batch for minutes), so the server's wal_sender_timeout never
// ends the stream.
type Stream struct {
	conn   *pgconn.PgConn
	ack    LSN
	clock  func() time.Time
	queue  chan *queued
	free   chan *queued
	cancel context.CancelFunc
	done   chan struct{}
	// err is why the reader stopped; read after done is closed.
	err error
	// current is the message handed out by the last receive, returned to
	// free on the next.
	current *queued
	// queuedBytes counts the data of queued and current messages; released
	// wakes the reader when the consumer gives some back.
	queuedBytes atomic.Int64
	released    chan struct{}
	timer       *time.Timer
	close       sync.Once
}

type queued struct {
	msg Message
	buf []byte
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
	s := &Stream{conn: conn, ack: sc.Ack, clock: sc.Clock,
		queue: make(chan *queued, bufferedMessages), free: make(chan *queued, bufferedMessages),
		done: make(chan struct{}), released: make(chan struct{}, 1), timer: time.NewTimer(time.Hour)}
	s.timer.Stop()
	for range bufferedMessages {
		s.free <- &queued{}
	}
	// Asking for a reply gets a keepalive with the server's position at once,
	// which is how an idle stream learns that it is caught up.
	if err := s.sendStatus(ctx, true); err != nil {
		conn.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	readCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	go s.read(readCtx)
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
	return nil
}

// read is the connection's only user once streaming runs: it receives
// messages into the queue and sends a status update whenever one is due,
// whether or not the consumer keeps up.
func (s *Stream) read(ctx context.Context) {
	defer close(s.done)
	defer close(s.queue)
	lastStatus := s.clock()
	status := func(replyRequested bool) error {
		if err := s.sendStatus(ctx, replyRequested); err != nil {
			return err
		}
		lastStatus = s.clock()
		return nil
	}
	// waitForSlot takes a free buffer once the queue is within its byte
	// budget. While the consumer holds every buffer or too many bytes, the
	// server hears from the client every blockedStatusInterval; each buffer
	// the consumer gives back signals released.
	blocked := time.NewTimer(blockedStatusInterval)
	defer blocked.Stop()
	waitForSlot := func() (*queued, error) {
		for {
			if s.queuedBytes.Load() <= bufferedBytes {
				select {
				case slot := <-s.free:
					return slot, nil
				default:
				}
			}
			blocked.Reset(blockedStatusInterval - min(s.clock().Sub(lastStatus), blockedStatusInterval))
			select {
			case <-s.released:
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			case <-blocked.C:
				if err := status(false); err != nil {
					return nil, err
				}
			}
		}
	}
	for {
		if s.clock().Sub(lastStatus) >= statusInterval {
			if s.err = status(false); s.err != nil {
				return
			}
		}
		slot, err := waitForSlot()
		if err != nil {
			s.err = err
			return
		}
		deadline := max(min(statusInterval-s.clock().Sub(lastStatus), quietInterval), time.Millisecond)
		rctx, cancel := context.WithTimeout(ctx, deadline)
		raw, err := s.conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			s.free <- slot
			if ctx.Err() != nil {
				s.err = context.Cause(ctx)
				return
			}
			if pgconn.Timeout(err) {
				// Quiet: ask where the server is, so stop rules see progress.
				if s.err = status(true); s.err != nil {
					return
				}
				continue
			}
			s.err = fmt.Errorf("receive from replication stream: %w", err)
			return
		}
		ok, err := s.fill(slot, raw)
		if err == nil && ok && slot.msg.Kind == KindKeepalive && slot.replyRequested() {
			err = status(false)
		}
		if err != nil {
			s.err = err
			return
		}
		if !ok {
			s.free <- slot
			continue
		}
		s.queuedBytes.Add(int64(len(slot.buf)))
		s.queue <- slot
	}
}

// replyRequested is a keepalive's request for a status update, kept in its
// buffer's first byte.
func (q *queued) replyRequested() bool { return len(q.buf) > 0 && q.buf[0] == 1 }

// fill copies a server message into a queue slot; false for messages that
// carry nothing for the consumer.
func (s *Stream) fill(q *queued, raw pgproto3.BackendMessage) (bool, error) {
	switch msg := raw.(type) {
	case *pgproto3.CopyData:
		if len(msg.Data) == 0 {
			return false, errors.New("empty replication message")
		}
		switch msg.Data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
			if err != nil {
				return false, fmt.Errorf("parse keepalive: %w", err)
			}
			q.buf = q.buf[:0]
			if ka.ReplyRequested {
				q.buf = append(q.buf, 1)
			}
			q.msg = Message{Kind: KindKeepalive, ServerWALEnd: ka.ServerWALEnd}
			return true, nil
		case pglogrepl.XLogDataByteID:
			xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
			if err != nil {
				return false, fmt.Errorf("parse XLogData: %w", err)
			}
			q.buf = append(q.buf[:0], xld.WALData...)
			q.msg = Message{Kind: KindData, WALStart: xld.WALStart, ServerWALEnd: xld.ServerWALEnd, Data: q.buf}
			return true, nil
		}
		return false, fmt.Errorf("unknown replication message type %q", msg.Data[0])
	case *pgproto3.ErrorResponse:
		return false, fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(msg))
	case *pgproto3.CopyDone:
		return false, errors.New("server ended the replication stream")
	}
	return false, nil
}

// receive waits up to wait for one message. Data is valid until the next
// receive.
func (s *Stream) receive(ctx context.Context, wait time.Duration) (Message, error) {
	if q := s.current; q != nil {
		s.current = nil
		s.queuedBytes.Add(-int64(len(q.buf)))
		q.msg = Message{}
		if cap(q.buf) > keptBufferSize {
			q.buf = nil
		}
		s.free <- q
		select {
		case s.released <- struct{}{}:
		default:
		}
	}
	var q *queued
	var ok bool
	select {
	case q, ok = <-s.queue:
	default:
		s.timer.Reset(wait)
		select {
		case q, ok = <-s.queue:
			s.timer.Stop()
		case <-s.timer.C:
			return Message{}, nil
		case <-ctx.Done():
			s.timer.Stop()
			return Message{}, context.Cause(ctx)
		}
	}
	if !ok {
		return Message{}, s.err
	}
	s.current = q
	return q.msg, nil
}

// Next is a plugin's Source.Next: it waits up to wait for a message,
// reports keepalives itself and hands data messages to decode, which
// returns nil for messages that carry no event. ev is the Source's event,
// reused for keepalives. A message without an event returns nil too, so
// that a stream of them (an application's pg_logical_emit_message
// heartbeats) never keeps the caller from its stop rules.
func (s *Stream) Next(ctx context.Context, wait time.Duration, ev *Event, decode func(Message) (*Event, error)) (*Event, error) {
	msg, err := s.receive(ctx, wait)
	if err != nil {
		return nil, err
	}
	switch msg.Kind {
	case KindNone:
		return nil, nil
	case KindKeepalive:
		*ev = Event{Op: OpKeepalive, LSN: msg.ServerWALEnd}
		return ev, nil
	}
	got, err := decode(msg)
	if err != nil {
		return nil, fmt.Errorf("at %s: %w", msg.WALStart, err)
	}
	return got, nil
}

// Close ends streaming and the connection.
func (s *Stream) Close(ctx context.Context) error {
	s.close.Do(func() {
		s.cancel()
		<-s.done
	})
	return s.conn.Close(ctx)
}
