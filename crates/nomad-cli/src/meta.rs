//! General options shared by every API command (`-address`, `-region`, `-namespace`, `-token`, TLS).

use crate::api::{Client, ClientConfig};
use crate::goflag::{parse_go_bool, FlagSet};

/// Default agent address of the Go client.
pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:4646";

/// The general options after flags and environment were applied.
// The colour settings are parsed and kept (output has no colour yet).
#[allow(dead_code)]
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// Agent address (`-address`, `NOMAD_ADDR`).
    pub address: String,
    /// Region (`-region`, `NOMAD_REGION`).
    pub region: String,
    /// Namespace (`-namespace`, `NOMAD_NAMESPACE`).
    pub namespace: String,
    /// ACL token secret (`-token`, `NOMAD_TOKEN`).
    pub token: String,
    /// TLS settings: accepted and kept; TLS transport is not built yet.
    pub ca_cert: String,
    /// CA directory.
    pub ca_path: String,
    /// Client certificate.
    pub client_cert: String,
    /// Client key.
    pub client_key: String,
    /// SNI name.
    pub tls_server_name: String,
    /// Skip certificate verification.
    pub insecure: bool,
    /// Disable colours.
    pub no_color: bool,
    /// Force colours.
    pub force_color: bool,
}

/// Adds the general options to a command's flag set.
pub fn register(fs: &mut FlagSet) {
    for s in [
        "address",
        "region",
        "namespace",
        "token",
        "ca-cert",
        "ca-path",
        "client-cert",
        "client-key",
        "tls-server-name",
    ] {
        fs.string(s, "");
    }
    for b in ["no-color", "force-color", "insecure", "tls-skip-verify"] {
        fs.bool(b, false);
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

fn pick(fs: &FlagSet, flag: &str, env_name: &str) -> String {
    let v = fs.get_str(flag);
    if !v.is_empty() {
        return v;
    }
    env(env_name)
}

/// A boolean flag when given, else its variable (set and not a Go false value).
fn bool_flag_or_env(fs: &FlagSet, flag: &str, env_name: &str) -> bool {
    if fs.is_set(flag) {
        return fs.get_bool(flag);
    }
    let v = env(env_name);
    !v.is_empty() && parse_go_bool(&v) != Some(false)
}

impl Meta {
    /// Reads the general options from parsed flags, falling back to the environment.
    pub fn from_flags(fs: &FlagSet) -> Self {
        let mut address = pick(fs, "address", "NOMAD_ADDR");
        if address.is_empty() {
            address = DEFAULT_ADDRESS.to_string();
        }
        if !address.contains("://") {
            address = format!("http://{address}");
        }
        // A flag given explicitly (even `=false`) beats the environment.
        let insecure = if fs.is_set("insecure") || fs.is_set("tls-skip-verify") {
            fs.get_bool("insecure") || fs.get_bool("tls-skip-verify")
        } else {
            parse_go_bool(&env("NOMAD_SKIP_VERIFY")).unwrap_or(false)
        };
        let no_color = bool_flag_or_env(fs, "no-color", "NOMAD_CLI_NO_COLOR");
        let force_color = bool_flag_or_env(fs, "force-color", "NOMAD_CLI_FORCE_COLOR");
        crate::color::configure(no_color, force_color);
        Meta {
            address,
            region: pick(fs, "region", "NOMAD_REGION"),
            namespace: pick(fs, "namespace", "NOMAD_NAMESPACE"),
            token: pick(fs, "token", "NOMAD_TOKEN"),
            ca_cert: pick(fs, "ca-cert", "NOMAD_CACERT"),
            ca_path: pick(fs, "ca-path", "NOMAD_CAPATH"),
            client_cert: pick(fs, "client-cert", "NOMAD_CLIENT_CERT"),
            client_key: pick(fs, "client-key", "NOMAD_CLIENT_KEY"),
            tls_server_name: pick(fs, "tls-server-name", "NOMAD_TLS_SERVER_NAME"),
            insecure,
            no_color,
            force_color,
        }
    }

    /// Whether `-namespace=*` asks for all namespaces.
    pub fn all_namespaces(&self) -> bool {
        self.namespace == "*"
    }

    /// The TLS settings of `-ca-cert`, `-ca-path`, `-client-cert`, `-client-key`,
    /// `-tls-server-name` and `-tls-skip-verify` (each falling back to its `NOMAD_*` variable).
    pub fn tls_config(&self) -> nomad_tls::ClientTlsConfig {
        let path = |s: &str| (!s.is_empty()).then(|| std::path::PathBuf::from(s));
        nomad_tls::ClientTlsConfig {
            ca_cert: path(&self.ca_cert),
            ca_path: path(&self.ca_path),
            client_cert: path(&self.client_cert),
            client_key: path(&self.client_key),
            server_name: (!self.tls_server_name.is_empty()).then(|| self.tls_server_name.clone()),
            skip_verify: self.insecure,
        }
    }

    /// An API client for these options.
    pub fn client(&self) -> Client {
        Client::new(ClientConfig {
            address: self.address.clone(),
            region: self.region.clone(),
            namespace: self.namespace.clone(),
            token: self.token.clone(),
            http_auth: env("NOMAD_HTTP_AUTH"),
            tls: self.tls_config(),
        })
    }
}

/// Help text of the general options, in our own words.
pub fn general_options_usage() -> &'static str {
    "  -address=<addr>
    Address of the Nomad agent. Overrides NOMAD_ADDR.
    Default = http://127.0.0.1:4646

  -region=<region>
    Region to send requests to. Overrides NOMAD_REGION.
    Defaults to the agent's region.

  -namespace=<namespace>
    Namespace for namespaced requests. Overrides NOMAD_NAMESPACE.
    '*' selects all namespaces where a command supports it.
    Defaults to the \"default\" namespace.

  -no-color
    Turn off coloured output (also NOMAD_CLI_NO_COLOR).

  -force-color
    Force coloured output (also NOMAD_CLI_FORCE_COLOR).

  -ca-cert=<path>
    PEM CA certificate used to verify the agent. Overrides NOMAD_CACERT.

  -ca-path=<path>
    Directory of PEM CA certificates. Overrides NOMAD_CAPATH.

  -client-cert=<path>
    PEM client certificate for TLS. Overrides NOMAD_CLIENT_CERT.

  -client-key=<path>
    PEM private key of -client-cert. Overrides NOMAD_CLIENT_KEY.

  -tls-server-name=<value>
    SNI name for TLS. Overrides NOMAD_TLS_SERVER_NAME.

  -tls-skip-verify
    Skip TLS certificate checks (also NOMAD_SKIP_VERIFY). Not recommended.

  -token
    ACL token secret for requests. Overrides NOMAD_TOKEN."
}
