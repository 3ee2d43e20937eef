//! The agent's counters, rendered as Prometheus text at `/agent/v1/metrics`.
//!
//! Plain atomics: the egress proxy bumps them on every call, so they must cost nothing under
//! contention worth measuring. Per-route counters live with each route (see
//! [`RouteMetrics`]) and are registered here by name for rendering.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of one egress route.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    /// Indexed by status class: 1xx..5xx.
    pub responses: [Counter; 5],
    pub denied: Counter,
    pub rate_limited: Counter,
    pub too_large: Counter,
    pub unavailable: Counter,
    pub upstream_errors: Counter,
    /// Sum of call durations in microseconds (for an average).
    pub duration_micros: Counter,
}

impl RouteMetrics {
    pub fn record_status(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        if let Some(counter) = self.responses.get(class) {
            counter.inc();
        }
    }
}

/// Picks one counter out of a route's set.
type CounterPick = fn(&RouteMetrics) -> &Counter;

/// Every counter the agent keeps.
#[derive(Debug, Default)]
pub struct Metrics {
    pub auth_logins: Counter,
    pub auth_login_failures: Counter,
    pub token_renewals: Counter,
    pub token_renewal_failures: Counter,
    pub secret_fetches: Counter,
    pub secret_fetch_failures: Counter,
    pub lease_renewals: Counter,
    pub lease_renewal_failures: Counter,
    pub secrets_withdrawn: Counter,
    pub template_renders: Counter,
    pub template_render_failures: Counter,
    pub api_proxy_requests: Counter,
    routes: Mutex<Vec<(String, Arc<RouteMetrics>)>>,
}

impl Metrics {
    /// Registers a route's counters for rendering.
    pub fn register_route(&self, name: &str) -> Arc<RouteMetrics> {
        let metrics = Arc::new(RouteMetrics::default());
        if let Ok(mut routes) = self.routes.lock() {
            routes.push((name.to_owned(), Arc::clone(&metrics)));
        }
        metrics
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let simple: [(&str, &str, &Counter); 12] = [
            (
                "ward_agent_auth_logins_total",
                "Successful auto-auth logins.",
                &self.auth_logins,
            ),
            (
                "ward_agent_auth_login_failures_total",
                "Failed auto-auth logins.",
                &self.auth_login_failures,
            ),
            (
                "ward_agent_token_renewals_total",
                "Successful token renewals.",
                &self.token_renewals,
            ),
            (
                "ward_agent_token_renewal_failures_total",
                "Failed token renewals.",
                &self.token_renewal_failures,
            ),
            (
                "ward_agent_secret_fetches_total",
                "Secrets fetched from the server.",
                &self.secret_fetches,
            ),
            (
                "ward_agent_secret_fetch_failures_total",
                "Failed secret fetches.",
                &self.secret_fetch_failures,
            ),
            (
                "ward_agent_lease_renewals_total",
                "Successful lease renewals.",
                &self.lease_renewals,
            ),
            (
                "ward_agent_lease_renewal_failures_total",
                "Failed lease renewals.",
                &self.lease_renewal_failures,
            ),
            (
                "ward_agent_secrets_withdrawn_total",
                "Secrets withdrawn at expiry.",
                &self.secrets_withdrawn,
            ),
            (
                "ward_agent_template_renders_total",
                "Template files written.",
                &self.template_renders,
            ),
            (
                "ward_agent_template_render_failures_total",
                "Template renders that failed.",
                &self.template_render_failures,
            ),
            (
                "ward_agent_api_proxy_requests_total",
                "Requests forwarded by the API proxy.",
                &self.api_proxy_requests,
            ),
        ];
        for (name, help, counter) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.get()
            );
        }
        let routes = match self.routes.lock() {
            Ok(routes) => routes.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        out.push_str("# HELP ward_agent_egress_responses_total Egress proxy responses by route and status class.\n# TYPE ward_agent_egress_responses_total counter\n");
        for (route, metrics) in &routes {
            for (index, counter) in metrics.responses.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "ward_agent_egress_responses_total{{route=\"{route}\",code=\"{}xx\"}} {}",
                    index + 1,
                    counter.get()
                );
            }
        }
        let per_route: [(&str, &str, CounterPick); 6] = [
            (
                "ward_agent_egress_denied_total",
                "Calls refused by an allow list.",
                |m| &m.denied,
            ),
            (
                "ward_agent_egress_rate_limited_total",
                "Calls refused by the rate limit.",
                |m| &m.rate_limited,
            ),
            (
                "ward_agent_egress_too_large_total",
                "Calls refused for their body size.",
                |m| &m.too_large,
            ),
            (
                "ward_agent_egress_unavailable_total",
                "Calls refused because the credential was withdrawn or not ready.",
                |m| &m.unavailable,
            ),
            (
                "ward_agent_egress_upstream_errors_total",
                "Calls whose upstream could not be reached.",
                |m| &m.upstream_errors,
            ),
            (
                "ward_agent_egress_duration_microseconds_total",
                "Total time spent in proxied calls.",
                |m| &m.duration_micros,
            ),
        ];
        for (name, help, pick) in per_route {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (route, metrics) in &routes {
                let _ = writeln!(out, "{name}{{route=\"{route}\"}} {}", pick(metrics).get());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_route_counters() {
        let metrics = Metrics::default();
        let route = metrics.register_route("openai");
        route.record_status(200);
        route.record_status(503);
        route.denied.inc();
        let text = metrics.render();
        assert!(text.contains("ward_agent_egress_responses_total{route=\"openai\",code=\"2xx\"} 1"));
        assert!(text.contains("ward_agent_egress_responses_total{route=\"openai\",code=\"5xx\"} 1"));
        assert!(text.contains("ward_agent_egress_denied_total{route=\"openai\"} 1"));
    }
}
