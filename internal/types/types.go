// Package types maps PostgreSQL column types to JSON Schema and turns the
// server's text output of a value into the JSON the tap emits. It is pure: the
// PostgreSQL side resolves catalog rows into a Type, the Singer side encodes
// records with Type.AppendJSON, and both paths (copy and logical decoding) meet
// here so that a value looks the same whichever way it arrived.
package types

import (
	"fmt"
	"strings"
)

// Kind selects how a value's text form becomes JSON.
type Kind uint8

const (
	// KindString emits the text output as a JSON string.
	KindString Kind = iota
	KindInteger
	KindNumeric
	KindFloat
	KindBoolean
	// KindBit1 is bit(1): "0"/"1" as a boolean.
	KindBit1
	KindJSON
	KindHstore
	KindDate
	KindTimestamp
	KindTime
	KindTimeTZ
	KindArray
	// KindUnsupported marks a type PostgreSQL gives no text form for.
	KindUnsupported
)

// CatalogType is one pg_type row, as far as type resolution needs it.
type CatalogType struct {
	OID        uint32
	Name       string // typname
	Type       byte   // typtype: b, c, d, e, p, r, m
	Category   byte   // typcategory
	Elem       uint32 // typelem
	BaseType   uint32 // typbasetype, for domains
	BaseTypmod int32  // typtypmod, for domains
	Delim      byte   // typdelim
}

// Type is a column's resolved type: what its values look like and how they
// are described in JSON Schema.
type Type struct {
	Kind Kind
	// BaseName is the typname after domains are resolved (element's for arrays).
	BaseName string
	// Float32 is set for real, whose shortest round-trip form is 32-bit.
	Float32 bool
	// IntMin and IntMax bound integer kinds.
	IntMin, IntMax string
	// Precision and Scale of numeric(p,s); HasTypmod is false for plain numeric.
	HasTypmod        bool
	Precision, Scale int
	// MaxLength of varchar(n)/char(n); 0 when unbounded.
	MaxLength int
	// Elem and Delim describe array elements.
	Elem  *Type
	Delim byte
	// JSONAsObject emits json/jsonb as JSON values instead of JSON text.
	JSONAsObject bool
}

// Lookup finds a pg_type row by OID.
type Lookup func(oid uint32) (CatalogType, bool)

// maxDomainDepth bounds domain chains so a corrupt catalog cannot loop us.
const maxDomainDepth = 32

// Resolve resolves a column's type OID and typmod (atttypmod) through domains
// and arrays.
func Resolve(oid uint32, typmod int32, lookup Lookup, opts Options) (*Type, error) {
	ct, typmod, err := resolveDomain(oid, typmod, lookup)
	if err != nil {
		return nil, err
	}
	if isArray(ct) {
		elemCT, ok := lookup(ct.Elem)
		if !ok {
			return nil, fmt.Errorf("array type %s: element type %d not found", ct.Name, ct.Elem)
		}
		// An array column's typmod applies to its elements (varchar(10)[]).
		elem, err := Resolve(ct.Elem, typmod, lookup, opts)
		if err != nil {
			return nil, err
		}
		delim := elemCT.Delim
		if delim == 0 {
			delim = ','
		}
		return &Type{Kind: KindArray, BaseName: elem.BaseName, Elem: elem, Delim: delim, JSONAsObject: opts.JSONAsObject}, nil
	}
	t := scalarType(ct, typmod)
	t.JSONAsObject = opts.JSONAsObject
	return t, nil
}

func resolveDomain(oid uint32, typmod int32, lookup Lookup) (CatalogType, int32, error) {
	for range maxDomainDepth {
		ct, ok := lookup(oid)
		if !ok {
			return CatalogType{}, 0, fmt.Errorf("type %d not found in pg_type", oid)
		}
		if ct.Type != 'd' {
			return ct, typmod, nil
		}
		oid, typmod = ct.BaseType, ct.BaseTypmod
	}
	return CatalogType{}, 0, fmt.Errorf("type %d: domain chain deeper than %d", oid, maxDomainDepth)
}

// isArray tells true arrays from int2vector/oidvector, which share the
// category but print space-separated without braces.
func isArray(ct CatalogType) bool {
	return ct.Category == 'A' && ct.Elem != 0 && strings.HasPrefix(ct.Name, "_")
}

func scalarType(ct CatalogType, typmod int32) *Type {
	t := &Type{Kind: KindString, BaseName: ct.Name}
	if ct.Type == 'p' {
		t.Kind = KindUnsupported
		return t
	}
	switch ct.Name {
	case "int2":
		t.Kind, t.IntMin, t.IntMax = KindInteger, "-32768", "32767"
	case "int4":
		t.Kind, t.IntMin, t.IntMax = KindInteger, "-2147483648", "2147483647"
	case "int8":
		t.Kind, t.IntMin, t.IntMax = KindInteger, "-9223372036854775808", "9223372036854775807"
	case "numeric":
		t.Kind = KindNumeric
		if typmod >= 4 {
			t.HasTypmod = true
			t.Precision = int(((typmod - 4) >> 16) & 0xffff)
			// The scale is an 11-bit signed field since PostgreSQL 15.
			t.Scale = int(((typmod-4)&0x7ff ^ 1024) - 1024)
		}
	case "float4":
		t.Kind, t.Float32 = KindFloat, true
	case "float8":
		t.Kind = KindFloat
	case "bool":
		t.Kind = KindBoolean
	case "bit":
		if typmod == 1 {
			t.Kind = KindBit1
		}
	case "varchar", "bpchar":
		if typmod >= 4 {
			t.MaxLength = int(typmod - 4)
		}
	case "json", "jsonb":
		t.Kind = KindJSON
	case "hstore":
		t.Kind = KindHstore
	case "date":
		t.Kind = KindDate
	case "timestamp", "timestamptz":
		t.Kind = KindTimestamp
	case "time":
		t.Kind = KindTime
	case "timetz":
		t.Kind = KindTimeTZ
	}
	return t
}

// Supported reports whether values of the type can be synced.
func (t *Type) Supported() bool {
	if t.Kind == KindArray {
		return t.Elem.Supported()
	}
	return t.Kind != KindUnsupported
}

// pow10Text is 10^n as exact decimal text (n may be negative).
func pow10Text(n int) string {
	if n >= 0 {
		return "1" + strings.Repeat("0", n)
	}
	return "0." + strings.Repeat("0", -n-1) + "1"
}

// numericBound returns 10^(p-s) exactly, as the reference's Python integer did.
func (t *Type) numericBound() string { return pow10Text(t.Precision - t.Scale) }

// numericMultipleOf is 10^-s, or 1 for scale 0. Negative scales round to
// multiples of 10^-s too (numeric(2,-3) holds multiples of 1000).
func (t *Type) numericMultipleOf() string {
	if t.Scale <= 0 {
		return pow10Text(-t.Scale)
	}
	// Small scales as plain decimals; large ones in exponent form, as
	// Python's float repr printed them for the reference tap.
	if t.Scale <= 4 {
		return pow10Text(-t.Scale)
	}
	return fmt.Sprintf("1e-%02d", t.Scale)
}
