package types

import (
	"bytes"
	"encoding/json"
)

// Schema is a JSON Schema fragment in the draft-4 form the reference tap and
// singer-python targets read. Field order is output order.
type Schema struct {
	Type             []string     `json:"type,omitempty"`
	Format           string       `json:"format,omitempty"`
	Ref              string       `json:"$ref,omitempty"`
	ExclusiveMaximum bool         `json:"exclusiveMaximum,omitempty"`
	Maximum          json.Number  `json:"maximum,omitempty"`
	ExclusiveMinimum bool         `json:"exclusiveMinimum,omitempty"`
	Minimum          json.Number  `json:"minimum,omitempty"`
	MultipleOf       json.Number  `json:"multipleOf,omitempty"`
	MaxLength        int          `json:"maxLength,omitempty"`
	Properties       *Properties  `json:"properties,omitempty"`
	Items            *Schema      `json:"items,omitempty"`
	Definitions      *Definitions `json:"definitions,omitempty"`
}

// Property is one named schema in declaration order.
type Property struct {
	Name   string
	Schema *Schema
}

// Properties keeps column order, which a Go map would lose.
type Properties []Property

// MarshalJSON writes the properties as an object in declaration order.
func (p Properties) MarshalJSON() ([]byte, error) { return marshalOrdered(p) }

// Definitions are the shared recursive array schemas, in a stable order.
type Definitions []Property

// MarshalJSON writes the definitions as an object in declaration order.
func (d Definitions) MarshalJSON() ([]byte, error) { return marshalOrdered(d) }

func marshalOrdered(props []Property) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, p := range props {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(AppendString(nil, p.Name))
		b.WriteByte(':')
		v, err := json.Marshal(p.Schema)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Options are the config switches that change schemas and values.
type Options struct {
	// JSONAsObject emits json/jsonb as JSON values instead of JSON text.
	JSONAsObject bool
}

func nullable(kind string, null bool) []string {
	if null {
		return []string{"null", kind}
	}
	return []string{kind}
}

// anyJSONTypes is every JSON type: json_as_object lets json columns hold any value.
func anyJSONTypes() []string { return []string{"object", "array", "string", "number", "boolean"} }

// ColumnSchema returns the column's JSON Schema and the names of the shared
// definitions it refers to. Key columns are not nullable.
func (t *Type) ColumnSchema(null bool) (*Schema, []string) {
	if t.Kind == KindArray {
		def := t.arrayDefinition()
		return &Schema{
			Type:  nullable("array", null),
			Items: &Schema{Ref: "#/definitions/" + def},
		}, []string{def}
	}
	s := &Schema{}
	switch t.Kind {
	case KindInteger:
		s.Type = nullable("integer", null)
		s.Minimum, s.Maximum = json.Number(t.IntMin), json.Number(t.IntMax)
	case KindNumeric:
		s.Type = nullable("number", null)
		if t.HasTypmod {
			bound := t.numericBound()
			s.ExclusiveMaximum, s.Maximum = true, json.Number(bound)
			s.ExclusiveMinimum, s.Minimum = true, json.Number("-"+bound)
			s.MultipleOf = json.Number(t.numericMultipleOf())
		}
	case KindFloat:
		s.Type = nullable("number", null)
	case KindBoolean, KindBit1:
		s.Type = nullable("boolean", null)
	case KindJSON:
		if t.JSONAsObject {
			s.Type = anyJSONTypes()
			if null {
				s.Type = append([]string{"null"}, s.Type...)
			}
		} else {
			s.Type = nullable("string", null)
		}
	case KindHstore:
		s.Type = nullable("object", null)
		s.Properties = &Properties{}
	case KindDate, KindTimestamp:
		s.Type = nullable("string", null)
		s.Format = "date-time"
	default:
		s.Type = nullable("string", null)
		s.MaxLength = t.MaxLength
	}
	return s, nil
}

// arrayDefinition names the recursive definition for the element kind.
func (t *Type) arrayDefinition() string {
	switch t.Elem.Kind {
	case KindInteger:
		return "sdc_recursive_integer_array"
	case KindNumeric, KindFloat:
		return "sdc_recursive_number_array"
	case KindBoolean, KindBit1:
		return "sdc_recursive_boolean_array"
	case KindDate, KindTimestamp:
		return "sdc_recursive_timestamp_array"
	case KindHstore:
		return "sdc_recursive_object_array"
	case KindJSON:
		if t.JSONAsObject {
			return "sdc_recursive_object_array"
		}
	}
	return "sdc_recursive_string_array"
}

// recursiveDefinitionOrder fixes the order definitions appear in.
func recursiveDefinitionOrder() [6]string {
	return [...]string{
		"sdc_recursive_integer_array",
		"sdc_recursive_number_array",
		"sdc_recursive_string_array",
		"sdc_recursive_boolean_array",
		"sdc_recursive_timestamp_array",
		"sdc_recursive_object_array",
	}
}

func recursiveDefinition(name string) *Schema {
	s := &Schema{Items: &Schema{Ref: "#/definitions/" + name}}
	switch name {
	case "sdc_recursive_integer_array":
		s.Type = []string{"null", "integer", "array"}
	case "sdc_recursive_number_array":
		s.Type = []string{"null", "number", "array"}
	case "sdc_recursive_boolean_array":
		s.Type = []string{"null", "boolean", "array"}
	case "sdc_recursive_timestamp_array":
		s.Type = []string{"null", "string", "array"}
		s.Format = "date-time"
	case "sdc_recursive_object_array":
		s.Type = []string{"null", "object", "array"}
	default:
		s.Type = []string{"null", "string", "array"}
	}
	return s
}

// DefinitionsFor returns the recursive definitions named in used, in a stable
// order, or nil when none is used.
func DefinitionsFor(used map[string]bool) *Definitions {
	var defs Definitions
	for _, name := range recursiveDefinitionOrder() {
		if used[name] {
			defs = append(defs, Property{Name: name, Schema: recursiveDefinition(name)})
		}
	}
	if defs == nil {
		return nil
	}
	return &defs
}

// StreamSchema is a stream's top-level schema: an object of its columns.
type StreamSchema struct {
	Type        string       `json:"type"`
	Properties  Properties   `json:"properties"`
	Definitions *Definitions `json:"definitions,omitempty"`
}
