package pgoutput

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tap-postgres/tap-postgres/internal/logical"
)

// Options are what the tap asks of pgoutput.
type Options struct {
	Publication string
	// ServerVersion is server_version_num: it decides the protocol.
	ServerVersion int
}

// pluginArgs are pgoutput's options: the highest protocol the server speaks
// whose messages the decoder reads (2 from PostgreSQL 14; without streaming
// its messages are protocol 1's), text values, no streaming of large
// transactions (the server spills them to disk; the tap's memory stays
// flat).
func pluginArgs(opts Options) []string {
	args := []string{logical.PluginArg("publication_names", quoteIdent(opts.Publication))}
	if opts.ServerVersion >= 140000 {
		return append(args, logical.PluginArg("proto_version", "2"), logical.PluginArg("messages", "true"))
	}
	return append(args, logical.PluginArg("proto_version", "1"))
}

// quoteIdent quotes a name for publication_names, a list of identifiers.
func quoteIdent(name string) string {
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// ServerVersion reads server_version_num.
func ServerVersion(ctx context.Context, conn *pgx.Conn) (int, error) {
	var text string
	if err := conn.QueryRow(ctx, "SELECT current_setting('server_version_num')").Scan(&text); err != nil {
		return 0, fmt.Errorf("read server_version_num: %w", err)
	}
	v, err := strconv.Atoi(text)
	if err != nil {
		return 0, fmt.Errorf("server_version_num %q: %w", text, err)
	}
	return v, nil
}

// Source is a slot streamed through pgoutput.
type Source struct {
	stream  *logical.Stream
	decoder *Decoder
	event   logical.Event
}

// Open starts streaming the slot with pgoutput's options.
func Open(ctx context.Context, cfg *pgconn.Config, sc logical.StreamConfig, opts Options) (*Source, error) {
	sc.PluginArgs = pluginArgs(opts)
	stream, err := logical.StartStream(ctx, cfg, sc)
	if err != nil {
		return nil, err
	}
	return &Source{stream: stream, decoder: NewDecoder()}, nil
}

// Next returns the next event: a change, a transaction boundary or a
// keepalive.
func (s *Source) Next(ctx context.Context, wait time.Duration) (*logical.Event, error) {
	if ev, err := s.decoder.More(); ev != nil || err != nil {
		return ev, err
	}
	return s.stream.Next(ctx, wait, &s.event, func(msg logical.Message) (*logical.Event, error) {
		return s.decoder.Decode(msg.Data, msg.WALStart)
	})
}

// Close ends streaming.
func (s *Source) Close(ctx context.Context) error { return s.stream.Close(ctx) }
