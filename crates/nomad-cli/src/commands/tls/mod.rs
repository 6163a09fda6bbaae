//! `nomad tls ca create` and `nomad tls cert create -server|-client|-cli`: a CA and agent/CLI
//! certificates in the current directory, named as Nomad names them. Existing files are never
//! overwritten; private keys are written 0600.

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use nomad_tls::{
    create_ca_with_additional_domains, create_cert, default_ca_file_names, default_file_names,
    CaOptions, CertOptions, CertRole, DEFAULT_CA_DAYS, DEFAULT_CERT_DAYS,
};

use crate::commands::{client_flags, parse_no_args, with_general};
use crate::goflag::FlagSet;
use crate::meta::Meta;

const HELP: &str = "Usage: nomad tls <subcommand> <subcommand> [options]

  Create a certificate authority and the certificates agents and the CLI
  use for TLS.

Subcommands:
    ca      Create a certificate authority
    cert    Create a certificate signed by the CA
";

/// Dispatches `nomad tls ...`.
pub fn run(args: &[String]) -> i32 {
    match (
        args.first().map(String::as_str),
        args.get(1).map(String::as_str),
    ) {
        (Some("ca"), Some("create")) => ca_create(&args[2..]),
        (Some("cert"), Some("create")) => cert_create(&args[2..]),
        (Some("-h" | "-help" | "--help"), _) => {
            outln!("{}", HELP.trim_end());
            0
        }
        _ => {
            eprintln!("{}", HELP.trim_end());
            1
        }
    }
}

fn exists(p: &str) -> bool {
    Path::new(p).symlink_metadata().is_ok()
}

/// Writes `data` to a new file `path` (never replacing one) with `mode`.
fn write_new(path: &str, data: &str, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(data.as_bytes())?;
    f.sync_all()
}

fn days_flag(fs: &FlagSet, default: u32) -> Result<u32, String> {
    let d = fs.get_int("days");
    if d <= 0 {
        return Err("Please provide a positive number of days".into());
    }
    u32::try_from(d)
        .map_err(|_| format!("-days {d} is too large"))
        .map(|d| if d == 0 { default } else { d })
}

fn ca_create(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad tls ca create [options]

  Creates a certificate authority: <domain>-agent-ca.pem and its key
  <domain>-agent-ca-key.pem in the current directory.",
        "CA Create Options:

  -additional-domain=<domain>
    Another domain the name constraint permits. Repeatable.

  -common-name=<name>
    The CA's common name. Defaults to \"Nomad Agent CA <serial>\".

  -days=1825
    How long the CA is valid.

  -domain=nomad
    The domain: names the files and the constrained zone.

  -name-constraint=false
    Restrict the CA to names under the domain, localhost and nomad.",
    );
    let mut fs = client_flags();
    fs.list("additional-domain")
        .string("common-name", "")
        .int("days", i64::from(DEFAULT_CA_DAYS))
        .string("domain", "nomad")
        .bool("name-constraint", false)
        .string("country", "")
        .string("postal-code", "")
        .string("province", "")
        .string("locality", "")
        .string("street-address", "")
        .string("organization", "")
        .string("organizational-unit", "");
    if let Err(code) = parse_no_args(&mut fs, args, &help, "tls ca create") {
        return code;
    }
    let domain = fs.get_str("domain");
    if domain.is_empty() {
        eprintln!("Please provide a value for -domain");
        return 1;
    }
    let additional = fs.get_list("additional-domain");
    if !additional.is_empty() && !fs.get_bool("name-constraint") {
        eprintln!("To use -additional-domain, please also enable -name-constraint");
        return 1;
    }
    let days = match days_flag(&fs, DEFAULT_CA_DAYS) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let (cert_file, key_file) = default_ca_file_names(&domain);
    if exists(&cert_file) {
        eprintln!("CA file '{cert_file}' already exists");
        return 1;
    }
    if exists(&key_file) {
        eprintln!("CA key file '{key_file}' already exists");
        return 1;
    }
    let common_name = Some(fs.get_str("common-name")).filter(|s| !s.is_empty());
    let opts = CaOptions {
        common_name,
        days,
        domain,
        name_constraint: fs.get_bool("name-constraint"),
    };
    let (cert, key) = match create_ca_with_additional_domains(&opts, &additional) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if let Err(e) = write_new(&cert_file, &cert, 0o644) {
        eprintln!("{e}");
        return 1;
    }
    outln!("==> CA certificate saved to: {cert_file}");
    if let Err(e) = write_new(&key_file, &key, 0o600) {
        eprintln!("{e}");
        return 1;
    }
    outln!("==> CA certificate key saved to: {key_file}");
    0
}

fn cert_create(args: &[String]) -> i32 {
    let help = with_general(
        "Usage: nomad tls cert create [options]

  Creates a certificate signed by the CA for a server (-server), a client
  (-client) or the CLI (-cli), named <region>-<role>-<domain>.pem with its
  key <region>-<role>-<domain>-key.pem, in the current directory.",
        "Certificate Create Options:

  -additional-dnsname=<name>
    Another DNS name the certificate is valid for. Repeatable.

  -additional-ipaddress=<ip>
    Another IP address the certificate is valid for. Repeatable.

  -ca=<path>
    The CA certificate. Defaults to #DOMAIN#-agent-ca.pem.

  -cli / -client / -server
    Which kind of certificate to create (exactly one).

  -cluster-region=<region>
    The region the certificate is for (else -region, else global).

  -days=365
    How long the certificate is valid.

  -domain=nomad
    The domain of the names in the certificate.

  -key=<path>
    The CA's key. Defaults to #DOMAIN#-agent-ca-key.pem.",
    );
    let mut fs = client_flags();
    fs.list("additional-dnsname")
        .list("additional-ipaddress")
        .string("ca", "#DOMAIN#-agent-ca.pem")
        .bool("cli", false)
        .bool("client", false)
        .bool("server", false)
        .string("cluster-region", "")
        .int("days", i64::from(DEFAULT_CERT_DAYS))
        .string("domain", "nomad")
        .string("key", "#DOMAIN#-agent-ca-key.pem");
    if let Err(code) = parse_no_args(&mut fs, args, &help, "tls cert create") {
        return code;
    }
    let roles: Vec<CertRole> = [
        ("server", CertRole::Server),
        ("client", CertRole::Client),
        ("cli", CertRole::Cli),
    ]
    .into_iter()
    .filter(|(f, _)| fs.get_bool(f))
    .map(|(_, r)| r)
    .collect();
    let role = match roles.as_slice() {
        [r] => *r,
        _ => {
            eprintln!("Please provide either -server, -client, or -cli");
            return 1;
        }
    };
    let domain = fs.get_str("domain");
    if domain.is_empty() {
        eprintln!("Please provide a value for -domain");
        return 1;
    }
    let days = match days_flag(&fs, DEFAULT_CERT_DAYS) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let meta_region = Meta::from_flags(&fs).region;
    let region = match fs.get_str("cluster-region") {
        r if !r.is_empty() => r,
        _ if !meta_region.is_empty() && meta_region != "global" => meta_region,
        _ => "global".to_string(),
    };
    let mut ips: Vec<IpAddr> = Vec::new();
    for raw in fs.get_list("additional-ipaddress") {
        let raw = raw.trim().to_string();
        if raw.is_empty() {
            continue;
        }
        match raw.parse() {
            Ok(ip) => ips.push(ip),
            Err(_) => {
                eprintln!("Invalid IP address {raw:?}");
                return 1;
            }
        }
    }
    let (cert_file, key_file) = default_file_names(&role, &region, &domain);
    if exists(&cert_file) {
        eprintln!("Certificate file '{cert_file}' already exists");
        return 1;
    }
    if exists(&key_file) {
        eprintln!("Key file '{key_file}' already exists");
        return 1;
    }
    let ca_file = fs.get_str("ca").replacen("#DOMAIN#", &domain, 1);
    let ca_key_file = fs.get_str("key").replacen("#DOMAIN#", &domain, 1);
    let ca = match std::fs::read_to_string(&ca_file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error reading CA: open {ca_file}: {e}");
            return 1;
        }
    };
    let ca_key = match std::fs::read_to_string(&ca_key_file) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("Error reading CA key: open {ca_key_file}: {e}");
            return 1;
        }
    };
    if role == CertRole::Server {
        eprintln!(
            "==> WARNING: Server Certificates grants authority to become a
    server and access all state in the cluster including root keys
    and all ACL tokens. Do not distribute them to production hosts
    that are not server nodes. Store them as securely as CA keys."
        );
    }
    outln!("==> Using CA file {ca_file} and CA key {ca_key_file}");
    let opts = CertOptions {
        role,
        region,
        domain,
        days,
        additional_dns: fs.get_list("additional-dnsname"),
        additional_ips: ips,
    };
    let (cert, key) = match create_cert(&ca, &ca_key, &opts) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let (what, key_what) = match role {
        CertRole::Server => ("Server Certificate", "Server Certificate key"),
        CertRole::Client => ("Client Certificate", "Client Certificate key"),
        CertRole::Cli => ("Cli Certificate", "CLI Certificate key"),
    };
    if let Err(e) = write_new(&cert_file, &cert, 0o644) {
        eprintln!("{e}");
        return 1;
    }
    outln!("==> {what} saved to {cert_file}");
    if let Err(e) = write_new(&key_file, &key, 0o600) {
        eprintln!("{e}");
        return 1;
    }
    outln!("==> {key_what} saved to {key_file}");
    0
}
