//! The tenants benchmark: what knowing who asks costs per request, against a baseline
//! measured in the same run.
//! `cargo bench --bench tenants [-- --quick]`
//!
//! - an OAuth access token (ES256 and RS256 JWTs, the issuer's keys cached): its first
//!   check (the signature and the claims) and a later one (remembered until it expires), against
//!   the SHA-256 of a token that a token-file check computes;
//! - the quota check of an execution (every quota set: admit, then release), for one
//!   principal and across 10,000, against an uncontended map lookup behind a mutex.
//!
//! Target for both: p50 under 20 us.

mod common;

use common::{cores, cpu_model, percentiles};

use std::{
    collections::HashMap,
    hint::black_box,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use codemode_mcp::{
    config::QuotaSettings,
    server::http::{AccessTokenVerifier, OAuthOptions},
    tenants::quota::{QuotaLimits, Quotas},
};
use sha2::Digest;

/// A P-256 key made for this benchmark alone (it signs nothing anywhere else): PKCS#8,
/// DER in base64.
const KEY_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgaytKTAaslGyJUoHSAqRJNaNyzD9YlLZK57Jg9EvE8yihRANCAASs2yIuxxOFDfi5pudp48srJ19y2UjcNw4YoNFp0wXyfWffyv3ealHhBrhyBfexgr37RNlWCUEMWBwITAVXrxO6";
/// An RSA 2048 key made for this benchmark alone: PKCS#1, DER in base64; and its modulus.
const RSA_PKCS1: &str = "MIIEpQIBAAKCAQEA6HTiGF57ZjXBtVNiiSdS/khs7mwqsEH2vThfKYRGKdkfawULtGo6E32i4rhi+W9h9UvlHRnO\
bzlzH1HpIvyReKJ4Td7gSeaioB6CIaPBEtIobizjFP11GG5PBN66pHG9Dqne2hWGv4E+bIP7lCvbzB1H2+wINX3d\
A3ywUVnpFPEOXxXmY7dYhWoxKSKKoyPAJny0xbPmr3KZWDyg9Jr7ArEdAwTNgc6yFL7x2Bg8LEwLDn1JHEwuK1OX\
i4q68Ua1TLGUQaKQF+OHgUYFOJ+oLG7AJJhUEbYrkGuCc6DYHrfn3+3oZboOv8PcQNTKGTJ2xfMbyk0j3+9CnAdy\
SqGDQQIDAQABAoIBACK/Q1i0hCpCw4Iw77FkFmzPiLDvAZvikFkNMcmz7a+ttpuPCoaHu8dUErgPKy7xQ6mgvvkQ\
Ssz8v8T2aoIB/QC/pc9bZG1yM0GkrdEMzacxkOeUgBvlcyPEFr259BjxWNBLUMuKnN9yw1EB6DuS1BfOZ1fBZXdm\
1ABZxXAI9OVd23elm0Snyk1MVDNQXBsWJaCRDqe+JczTO+NbNyp7dgZhKjSOZhv23AWA5P/VbXo5LxZy+C3xBnus\
5PVzSHBO61ffLDxn6fE2V8wElJh+VWxhXjpbpPeAPcCyJgb+8ja02hcVjXo3r9JOuZALnT/dsLqq6GjP6ZDkVdDM\
Wq2GFG0CgYEA/OOFqgLsg/2nTPO1fa+C/n7L+IO545zHcWDbT//fAsaXe+8Xvrs6sRooRz/r9BwiSL67PQ/B/yIY\
O48fk4UWztdPO+J3GSzWLjVi63R3vDWqdvGSSIjQPMCNkQSdcBkYVaZ/k0ATne9ravnXciPsArU9hQt60Ke/LStU\
TwxKxfsCgYEA61ECb5clU8QMnWZSeMviCJXb6KKuAVuM63+UHv2IfBE6xpW59eWkNwLFJrQWpQQQZNieo46nznw9\
F/apxQui+DL1wRg3hRHgjtT5wjip+axkI2bfj6xEXjuT72Z4ALr4df6XLhXcrDikcDqz7jJ4QSryZYLJlkem5+oW\
laCg4vMCgYEA60sChaG80D5E2Et1FSElP4dYXrypS4cG5o3Y4IFQzPNb5Nsb+8GWpUuSKGDoODOpDogwDGtJ9AmU\
BG5xUb+l7gPU3AIlEA5wpYPUqwCtmzdPiOXRVp29Kpl53nEtzyv6QU7uKmKXHf6yslENzUxw/kAFonGA7vz02qET\
C42DUNsCgYEAuHWXMDxOEVyz+spTyccgl1RJvxGOzxeh3pTyWlypmX+0ECkcTapG0KyGOPGgcpg99Z9ss49G8XCo\
P1mm+QRHKsJfrI68Lr61xaEja2EZtNKy6KFii/Ag47FWJKqxVPk7fNsmTQTsJ8B6/lK16vl7FLKCspoURY5DQrZY\
H9B7bYsCgYEAzQUA1/Ud8f543a0Hvo0aol6wuDtgp7VT7QScRw40ozPOLqDnLy6H3cyfTzvhXT2RuAib8PVT+3hV\
mLDeouDCWUhTJUl+3yOBFr2zcE7I2+1rdWpDYRQt9L8UELUCmvQ2txUfZ89mEaW8qGfnE1TlYVUTj2Uird4dM1bP\
iIpIueQ=";
const RSA_N: &str = "6HTiGF57ZjXBtVNiiSdS_khs7mwqsEH2vThfKYRGKdkfawULtGo6E32i4rhi-W9h9UvlHRnObzlzH1HpIvyReKJ4\
Td7gSeaioB6CIaPBEtIobizjFP11GG5PBN66pHG9Dqne2hWGv4E-bIP7lCvbzB1H2-wINX3dA3ywUVnpFPEOXxXm\
Y7dYhWoxKSKKoyPAJny0xbPmr3KZWDyg9Jr7ArEdAwTNgc6yFL7x2Bg8LEwLDn1JHEwuK1OXi4q68Ua1TLGUQaKQ\
F-OHgUYFOJ-oLG7AJJhUEbYrkGuCc6DYHrfn3-3oZboOv8PcQNTKGTJ2xfMbyk0j3-9CnAdySqGDQQ";
const KEY_X: &str = "rNsiLscThQ34uabnaePLKydfctlI3DcOGKDRadMF8n0";
const KEY_Y: &str = "Z9_K_d5qUeEGuHIF97GCvftE2VYJQQxYHAhMBVevE7o";

fn us(d: Duration) -> String {
    format!("{:.2} us", d.as_secs_f64() * 1e6)
}

fn verdict(p50: Duration) -> &'static str {
    if p50 < Duration::from_micros(20) {
        "under the 20 us target"
    } else {
        "OVER the 20 us target"
    }
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "codemode-mcp tenants benchmark ({} mode)",
        if quick { "quick" } else { "full" }
    );
    println!("machine: {} cores, {}", cores(), cpu_model());
    println!();

    runtime.block_on(async {
        // The issuer's key set, served on loopback as an issuer would.
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "x": KEY_X, "y": KEY_Y,
            "kid": "bench", "alg": "ES256", "use": "sig"
        }, {
            "kty": "RSA", "n": RSA_N, "e": "AQAB", "kid": "rsa", "alg": "RS256", "use": "sig"
        }]});
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let issuer = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        let resource = "http://127.0.0.1:8080/mcp";
        let mut options = OAuthOptions::new(issuer.clone(), resource);
        options.jwks_uri = Some(format!("{issuer}/jwks"));
        let verifier = AccessTokenVerifier::new(options)?;
        verifier.prefetch().await;

        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD.decode(KEY_PKCS8)?;
        let key = jsonwebtoken::EncodingKey::from_ec_der(&der);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some("bench".into());
        let now = jsonwebtoken::get_current_timestamp();
        let tokens = 2_000 / scale;
        let signed: Vec<String> = (0..tokens)
            .map(|i| {
                let claims = serde_json::json!({
                    "iss": issuer, "aud": resource, "sub": format!("agent-{i}"),
                    "exp": now + 3_600, "iat": now, "scope": "codemode:run"
                });
                jsonwebtoken::encode(&header, &claims, &key)
            })
            .collect::<Result<_, _>>()?;

        let mut first = Vec::with_capacity(tokens);
        for token in &signed {
            let started = Instant::now();
            let principal = verifier.principal(token).await;
            first.push(started.elapsed());
            assert!(principal.is_ok(), "{principal:?}");
        }
        // The same with RS256, what many issuers sign with (oidc-provider's default).
        let rsa_der = base64::engine::general_purpose::STANDARD.decode(RSA_PKCS1)?;
        let rsa_key = jsonwebtoken::EncodingKey::from_rsa_der(&rsa_der);
        let mut rsa_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        rsa_header.kid = Some("rsa".into());
        let mut rsa_first = Vec::with_capacity(tokens);
        for i in 0..tokens {
            let claims = serde_json::json!({
                "iss": issuer, "aud": resource, "sub": format!("rsa-agent-{i}"),
                "exp": now + 3_600, "iat": now
            });
            let token = jsonwebtoken::encode(&rsa_header, &claims, &rsa_key)?;
            let started = Instant::now();
            let principal = verifier.principal(&token).await;
            rsa_first.push(started.elapsed());
            assert!(principal.is_ok(), "{principal:?}");
        }
        let rounds = 20_000 / scale;
        let mut again = Vec::with_capacity(rounds);
        for i in 0..rounds {
            let token = &signed[i % signed.len()];
            let started = Instant::now();
            let principal = verifier.principal(token).await;
            again.push(started.elapsed());
            black_box(principal.is_ok());
        }
        let mut hashed = Vec::with_capacity(rounds);
        for i in 0..rounds {
            let token = &signed[i % signed.len()];
            let started = Instant::now();
            black_box(sha2::Sha256::digest(token.as_bytes()));
            hashed.push(started.elapsed());
        }
        let (first_p50, first_p99) = percentiles(&mut first);
        let (rsa_p50, rsa_p99) = percentiles(&mut rsa_first);
        let (again_p50, again_p99) = percentiles(&mut again);
        let (hash_p50, _) = percentiles(&mut hashed);
        println!("OAuth access token check per request (ES256 JWT, keys cached):");
        println!(
            "  first check (signature, claims): p50 {}  p99 {}   ({})",
            us(first_p50),
            us(first_p99),
            verdict(first_p50)
        );
        println!(
            "  first check, RS256 (2048 bits):  p50 {}  p99 {}   ({})",
            us(rsa_p50),
            us(rsa_p99),
            verdict(rsa_p50)
        );
        println!(
            "  a token checked before:          p50 {}  p99 {}   ({}; {:.1}x the SHA-256 of the token, {}, that a token-file check computes)",
            us(again_p50),
            us(again_p99),
            verdict(again_p50),
            again_p50.as_secs_f64() / hash_p50.as_secs_f64().max(1e-9),
            us(hash_p50)
        );
        println!();
        anyhow::Ok(())
    })?;

    // The quota check of one execution, every quota set.
    let settings: QuotaSettings = serde_json::from_value(serde_json::json!({
        "executionsPerMinute": 1_000_000_000u64, "cpuSecondsPerHour": 1e9,
        "toolCallsPerDay": 1_000_000_000u64, "egressBytesPerDay": 1_000_000_000u64,
        "concurrentExecutions": 1_000_000u64
    }))?;
    let limits = QuotaLimits::of(&settings, "codemode.quotas");
    let quotas = Arc::new(Quotas::in_memory());
    let rounds = 100_000 / scale;
    let mut one = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        let admitted = quotas.admit("alice", "alice", &limits);
        drop(black_box(admitted));
        one.push(started.elapsed());
    }
    let names: Vec<String> = (0..10_000).map(|i| format!("agent-{i}")).collect();
    let mut many = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let started = Instant::now();
        let admitted = quotas.admit(&names[i % names.len()], "agent", &limits);
        drop(black_box(admitted));
        many.push(started.elapsed());
    }
    let map: Mutex<HashMap<String, u64>> =
        Mutex::new(names.iter().map(|n| (n.clone(), 0)).collect());
    let mut floor = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let started = Instant::now();
        if let Some(count) = map.lock().unwrap().get_mut(&names[i % names.len()]) {
            *count += 1;
        }
        floor.push(started.elapsed());
    }
    // The same with the windows kept on disk (SQLite, WAL): each admission writes its
    // execution down.
    let dir = std::env::temp_dir().join(format!("codemode-bench-quotas-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let on_disk = Arc::new(Quotas::open(&dir.join("quotas.sqlite"))?);
    let mut disk = Vec::with_capacity(rounds / 10);
    for i in 0..rounds / 10 {
        let started = Instant::now();
        let admitted = on_disk.admit(&names[i % names.len()], "agent", &limits);
        drop(black_box(admitted));
        disk.push(started.elapsed());
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (one_p50, one_p99) = percentiles(&mut one);
    let (disk_p50, disk_p99) = percentiles(&mut disk);
    let (many_p50, many_p99) = percentiles(&mut many);
    let (floor_p50, _) = percentiles(&mut floor);
    println!("quota check of one execution (5 quotas: admit, then release; in memory):");
    println!(
        "  one principal:           p50 {}  p99 {}   ({})",
        us(one_p50),
        us(one_p99),
        verdict(one_p50)
    );
    println!(
        "  across 10,000 principals: p50 {}  p99 {}   ({}; {:.1}x a map lookup behind a mutex, {})",
        us(many_p50),
        us(many_p99),
        verdict(many_p50),
        many_p50.as_secs_f64() / floor_p50.as_secs_f64().max(1e-9),
        us(floor_p50)
    );
    println!(
        "  kept on disk (codemode.quotas.path): p50 {}  p99 {}   ({})",
        us(disk_p50),
        us(disk_p99),
        verdict(disk_p50)
    );
    Ok(())
}
