package testpg

import (
	"regexp"
	"strings"
	"testing"
)

func TestDBName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z_][a-z0-9_]*_[0-9a-f]{8}$`)
	for _, in := range []string{
		"TestFoo",
		"TestFoo/sub_test#01",
		"1Test",
		"",
		strings.Repeat("TestLong/", 20),
		"Ünïcode/x y",
	} {
		got := dbName(in)
		if !valid.MatchString(got) || len(got) > 50+1+8 {
			t.Errorf("dbName(%q) = %q", in, got)
		}
	}
	if dbName("TestX") == dbName("TestX") {
		t.Error("dbName is not unique")
	}
}
