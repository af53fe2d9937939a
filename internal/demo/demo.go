// Package demo is README command 1: a throwaway local PostgreSQL with sample
// data, discovered and synced end to end by the tap exactly as a user would
// run it (config, catalog and state files), with a summary of what came out.
package demo

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"

	"github.com/tap-postgres/tap-postgres/internal/cli"
	"github.com/tap-postgres/tap-postgres/internal/localpg"
	"github.com/tap-postgres/tap-postgres/internal/singer"
)

//go:embed sample.sql
var sampleSQL string

const database = "demo"

// Run runs the demo; args are the demo subcommand's flags.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tap-postgres demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	outDir := fs.String("out", "demo-output", "directory for config, catalog, messages and logs")
	keep := fs.Bool("keep", false, "leave the PostgreSQL cluster running (its address is printed)")
	if err := fs.Parse(args); err != nil {
		return cli.ExitUsage
	}
	if err := run(ctx, *outDir, *keep, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "CRITICAL demo: %v\n", err)
		return cli.ExitError
	}
	return cli.ExitOK
}

func run(ctx context.Context, outDir string, keep bool, stdout, stderr io.Writer) (err error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "==> starting a throwaway PostgreSQL 15 cluster")
	cluster, err := localpg.Start(ctx, localpg.Options{})
	if err != nil {
		return fmt.Errorf("start PostgreSQL (is postgresql-15 installed? scripts/demo.sh installs it): %w", err)
	}
	if keep {
		fmt.Fprintf(stdout, "    cluster kept running: %s (stop it with: pg_ctl -D %s stop)\n", cluster.ConnString(database), cluster.DataDir)
	} else {
		defer func() { err = errors.Join(err, cluster.Stop()) }()
	}
	fmt.Fprintf(stdout, "==> loading sample data into database %q (a shop schema and a table with every type)\n", database)
	if err := cluster.CreateDatabase(ctx, database); err != nil {
		return err
	}
	if err := cluster.Exec(ctx, database, sampleSQL); err != nil {
		return fmt.Errorf("load sample data: %w", err)
	}

	files := map[string]string{}
	for _, name := range []string{"config.json", "catalog.json", "messages.jsonl", "state.json", "tap.log"} {
		files[name] = filepath.Join(outDir, name)
	}
	cfg := map[string]any{
		"host": cluster.Host, "port": cluster.Port, "user": cluster.User, "password": cluster.Password,
		"dbname": database, "filter_dbs": database, "default_replication_method": "FULL_TABLE",
	}
	if err := writeJSON(files["config.json"], cfg); err != nil {
		return err
	}
	log, err := os.Create(files["tap.log"])
	if err != nil {
		return err
	}
	defer log.Close()

	fmt.Fprintln(stdout, "==> tap-postgres --config config.json --discover > catalog.json")
	var catalogOut bytes.Buffer
	if code := cli.Run(ctx, []string{"--config", files["config.json"], "--discover"}, cli.Env{Stdout: &catalogOut, Stderr: log}); code != 0 {
		return fmt.Errorf("discovery failed (exit %d); see %s", code, files["tap.log"])
	}
	catalog, err := singer.ParseCatalog(catalogOut.Bytes())
	if err != nil {
		return err
	}
	selected := 0
	for _, s := range catalog.Streams {
		// A partitioned root already carries its partitions' rows.
		isPartition, _, err := s.TableMeta().Bool(singer.MetaIsPartition)
		if err != nil {
			return err
		}
		s.SetEntry(singer.MetaSelected, !isPartition)
		if !isPartition {
			selected++
		}
	}
	if err := writeJSON(files["catalog.json"], catalog); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "    %d streams discovered; %d selected (partitions are synced through their root), FULL_TABLE (the config's default_replication_method)\n",
		len(catalog.Streams), selected)

	fmt.Fprintln(stdout, "==> tap-postgres --config config.json --catalog catalog.json > messages.jsonl")
	messages, err := os.Create(files["messages.jsonl"])
	if err != nil {
		return err
	}
	code := cli.Run(ctx, []string{"--config", files["config.json"], "--catalog", files["catalog.json"]}, cli.Env{Stdout: messages, Stderr: log})
	if err := messages.Close(); err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("sync failed (exit %d); see %s", code, files["tap.log"])
	}
	return summarize(files, stdout)
}

type streamSummary struct {
	records, schemas, activates int
	firstRecord                 json.RawMessage
}

func summarize(files map[string]string, stdout io.Writer) error {
	f, err := os.Open(files["messages.jsonl"])
	if err != nil {
		return err
	}
	defer f.Close()
	byStream := map[string]*streamSummary{}
	var lastState json.RawMessage
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var m struct {
			Type   string          `json:"type"`
			Stream string          `json:"stream"`
			Record json.RawMessage `json:"record"`
			Value  json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return fmt.Errorf("messages.jsonl: %w", err)
		}
		if m.Type == "STATE" {
			lastState = m.Value
			continue
		}
		s := byStream[m.Stream]
		if s == nil {
			s = &streamSummary{}
			byStream[m.Stream] = s
		}
		switch m.Type {
		case "RECORD":
			s.records++
			if s.firstRecord == nil {
				s.firstRecord = m.Record
			}
		case "SCHEMA":
			s.schemas++
		case "ACTIVATE_VERSION":
			s.activates++
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if err := os.WriteFile(files["state.json"], lastState, 0o644); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\n==> what came out, per stream")
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tRECORDS\tSCHEMA\tACTIVATE_VERSION")
	names := make([]string, 0, len(byStream))
	for n := range byStream {
		names = append(names, n)
	}
	slices.Sort(names)
	total := 0
	for _, n := range names {
		s := byStream[n]
		total += s.records
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", n, s.records, s.schemas, s.activates)
	}
	fmt.Fprintf(tw, "total\t%d\t\t\n", total)
	if err := tw.Flush(); err != nil {
		return err
	}
	if s := byStream["every_type"]; s != nil {
		fmt.Fprintf(stdout, "\nfirst record of every_type:\n%s\n", s.firstRecord)
	}
	fmt.Fprintf(stdout, "\nfiles: %s (messages), %s (final STATE), %s (catalog), %s (tap's stderr log)\n",
		files["messages.jsonl"], files["state.json"], files["catalog.json"], files["tap.log"])
	return nil
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o600)
}
