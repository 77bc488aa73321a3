package webhook

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestRecycler: a kept-alive connection opened before Rotated is asked to
// close after its next response; connections opened after it are not.
func TestRecycler(t *testing.T) {
	var r Recycler
	srv := httptest.NewUnstartedServer(r.Wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })))
	srv.Config.ConnState, srv.Config.ConnContext = r.ConnState, r.ConnContext
	srv.Start()
	defer srv.Close()
	client := srv.Client()
	// get reports whether the response asks the client to close the connection.
	get := func() bool {
		t.Helper()
		resp, err := client.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Close
	}
	if get() || get() {
		t.Error("a connection of the current generation was asked to close")
	}
	r.Rotated()
	if !get() {
		t.Error("a connection from before Rotated was not asked to close")
	}
	if get() {
		t.Error("the connection opened after Rotated was asked to close")
	}
}
