// Package mediaserver reads the stream lists of self-hosted media servers (nginx-rtmp's
// rtmp_stat page, SRS's HTTP API) and reconciles them with the rooms the engine believes
// live (docs/self-hosted.md, Reconciliation).
package mediaserver

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Lister lists the streams publishing on a media server for one application.
type Lister interface {
	// Streams returns the names of the streams being published to app.
	Streams(ctx context.Context, app string) (map[string]bool, error)
	// Name says which server this is, for logs.
	Name() string
}

// maxListBytes bounds one stream list read (a /stat page of thousands of streams is a few MB).
const maxListBytes = 32 << 20

// NginxStat reads nginx-rtmp's rtmp_stat XML page (media.statUrl).
type NginxStat struct {
	URL    string
	Client *http.Client
}

func (n NginxStat) Name() string { return "nginx-rtmp" }

// nginxStatDoc is the part of the rtmp_stat document the reconciliation reads.
type nginxStatDoc struct {
	Servers []struct {
		Applications []struct {
			Name    string `xml:"name"`
			Streams []struct {
				Name    string    `xml:"name"`
				Publish *struct{} `xml:"publishing"`
				Clients []struct {
					Publishing *struct{} `xml:"publishing"`
				} `xml:"client"`
			} `xml:"live>stream"`
		} `xml:"application"`
	} `xml:"server"`
}

func (n NginxStat) Streams(ctx context.Context, app string) (map[string]bool, error) {
	body, err := get(ctx, n.Client, n.URL)
	if err != nil {
		return nil, err
	}
	var doc nginxStatDoc
	if err := xml.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("nginx-rtmp stat: %w", err)
	}
	out := map[string]bool{}
	for _, s := range doc.Servers {
		for _, a := range s.Applications {
			if a.Name != app {
				continue
			}
			for _, st := range a.Streams {
				publishing := st.Publish != nil
				for _, c := range st.Clients {
					publishing = publishing || c.Publishing != nil
				}
				if publishing {
					out[st.Name] = true
				}
			}
		}
	}
	return out, nil
}

// SRSAPI reads SRS's GET /api/v1/streams (media.srsApiUrl is the API's base URL).
type SRSAPI struct {
	URL    string
	Client *http.Client
}

func (s SRSAPI) Name() string { return "srs" }

type srsStreams struct {
	Code    int `json:"code"`
	Streams []struct {
		Name    string `json:"name"`
		App     string `json:"app"`
		Publish struct {
			Active bool `json:"active"`
		} `json:"publish"`
	} `json:"streams"`
}

// srsPageSize is how many streams one request asks for (SRS answers 10 by default).
const srsPageSize = 1000

func (s SRSAPI) Streams(ctx context.Context, app string) (map[string]bool, error) {
	out := map[string]bool{}
	for start := 0; ; start += srsPageSize {
		u := fmt.Sprintf("%s/api/v1/streams?start=%d&count=%d", strings.TrimSuffix(s.URL, "/"), start, srsPageSize)
		body, err := get(ctx, s.Client, u)
		if err != nil {
			return nil, err
		}
		var doc srsStreams
		if err := json.Unmarshal(body, &doc); err != nil {
			return nil, fmt.Errorf("srs streams: %w", err)
		}
		if doc.Code != 0 {
			return nil, fmt.Errorf("srs streams: code %d", doc.Code)
		}
		for _, st := range doc.Streams {
			if st.App == app && st.Publish.Active {
				out[st.Name] = true
			}
		}
		if len(doc.Streams) < srsPageSize {
			return out, nil
		}
	}
}

func get(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", u, res.StatusCode)
	}
	return io.ReadAll(io.LimitReader(res.Body, maxListBytes))
}
