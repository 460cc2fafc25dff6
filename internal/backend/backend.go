// Package backend picks the backend BACKEND names for the pipelines: CE
// bulk jobs (the default) or Mixpanel's own APIs (internal/mpdirect). Only
// the export and import paths link it, so the webhook's cold start carries
// neither the Mixpanel client nor the pipelines it does not run.
package backend

import (
	"github.com/cebulk/cebulk/internal/exporter"
	"github.com/cebulk/cebulk/internal/importer"
	"github.com/cebulk/cebulk/internal/lambdaenv"
	"github.com/cebulk/cebulk/internal/mpdirect"
	"github.com/cebulk/cebulk/pkg/mixpanel"
)

// Exports returns the exporter's backend.
func Exports(c lambdaenv.Common, cl *lambdaenv.Clients) (exporter.Backend, error) {
	if c.Backend != lambdaenv.BackendMixpanel {
		return cl.CE, nil
	}
	mp, err := mixpanelClient(c, cl)
	if err != nil {
		return nil, err
	}
	return mpdirect.NewExports(mp), nil
}

// Imports returns the importer's backend; the Mixpanel backend keeps its
// chunk state in c.Bucket.
func Imports(c lambdaenv.Common, cl *lambdaenv.Clients) (importer.Backend, error) {
	if c.Backend != lambdaenv.BackendMixpanel {
		return cl.CE, nil
	}
	mp, err := mixpanelClient(c, cl)
	if err != nil {
		return nil, err
	}
	return mpdirect.NewImports(mp, cl.Store, c.Bucket), nil
}

// mixpanelClient is the Mixpanel client over the clients' secret,
// configured by MIXPANEL_REGION, MIXPANEL_BASE_URL and
// MIXPANEL_CONCURRENCY.
func mixpanelClient(c lambdaenv.Common, cl *lambdaenv.Clients) (*mpdirect.Client, error) {
	region, err := mixpanel.ParseRegion(c.MixpanelRegion)
	if err != nil {
		return nil, err
	}
	opts := []mixpanel.Option{mixpanel.WithLogger(cl.Log), mixpanel.WithRegion(region),
		mixpanel.WithConcurrency(max(c.MixpanelConcurrency, 1))}
	if c.MixpanelBaseURL != "" {
		opts = append(opts, mixpanel.WithBaseURL(c.MixpanelBaseURL))
	}
	return mpdirect.NewClient(cl.Secret, opts...), nil
}
