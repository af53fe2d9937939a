package logical

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// PluginAllowList is output_plugin_libraries as this role sees it:
// PostgreSQL's November 2026 minor releases (15.19+, and 16–18's) load only
// the output plugins it lists.
type PluginAllowList struct {
	// Known: the server has the setting. Older servers allow every plugin.
	Known bool
	// Readable: this role may read it (superusers and pg_read_all_settings).
	Readable bool
	Value    string
	Items    []string
}

// insufficientPrivilege is SQLSTATE 42501.
const insufficientPrivilege = "42501"

// ReadPluginAllowList reads output_plugin_libraries.
func ReadPluginAllowList(ctx context.Context, conn *pgx.Conn) (PluginAllowList, error) {
	var value *string
	err := conn.QueryRow(ctx, `SELECT current_setting('output_plugin_libraries', true)`).Scan(&value)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == insufficientPrivilege:
		return PluginAllowList{Known: true}, nil
	case err != nil:
		return PluginAllowList{}, fmt.Errorf("read output_plugin_libraries: %w", err)
	case value == nil:
		return PluginAllowList{}, nil
	}
	return PluginAllowList{Known: true, Readable: true, Value: *value, Items: SplitList(*value)}, nil
}

// Allows tells whether the list names plugin. Only meaningful when Known
// and Readable.
func (a PluginAllowList) Allows(plugin string) bool {
	for _, item := range a.Items {
		if item == plugin {
			return true
		}
	}
	return false
}

// SplitList splits a list setting as PostgreSQL does: items separated by
// commas, surrounding blanks dropped, unquoted items lowercased, a
// double-quoted item taken whole ("" is a quote), commas included.
func SplitList(value string) []string {
	var items []string
	s := value
	for {
		s = strings.TrimLeft(s, " \t\r\n")
		if s == "" {
			return items
		}
		var item string
		if s[0] == '"' {
			var b strings.Builder
			i := 1
			for i < len(s) {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			item, s = b.String(), s[i:]
			// Whatever follows a quoted item up to the next comma is not
			// part of any item.
			if comma := strings.IndexByte(s, ','); comma >= 0 {
				s = s[comma+1:]
			} else {
				s = ""
			}
		} else {
			var rest string
			var found bool
			item, rest, found = strings.Cut(s, ",")
			item = strings.ToLower(strings.TrimRight(item, " \t\r\n"))
			s = rest
			if !found {
				s = ""
			}
		}
		items = append(items, item)
	}
}

// ProbePlugin makes the server load a slot's output plugin without
// consuming anything: a peek that stops after the first WAL record. It is
// how a role that may not read output_plugin_libraries learns whether the
// slot's plugin is allowed.
func ProbePlugin(ctx context.Context, conn *pgx.Conn, slot string) error {
	rows, err := conn.Query(ctx, `SELECT 1 FROM pg_logical_slot_peek_changes($1, '0/1'::pg_lsn, 1)`, slot)
	if err == nil {
		rows.Close()
		err = rows.Err()
	}
	if err != nil {
		return fmt.Errorf("load the output plugin of slot %s: %w", slot, err)
	}
	return nil
}
