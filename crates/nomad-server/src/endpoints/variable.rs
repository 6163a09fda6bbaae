//! Variables (Nomad's `variables_endpoint.go`): list, read, write and delete, with
//! check-and-set decided in the log so concurrent writers cannot both win.
//!
//! nomad-rs keeps variables as written (no keyring yet): they are as private as the data
//! dir and the Raft traffic, which TLS guards on the wire.

use nomad_state::{Command, Table, VarOp, VAR_CAS_CONFLICT};
use nomad_structs::{Variable, VariableMetadata};

use crate::acl::ResolvedAcl;
use crate::{namespace_or_default, now_nanos, QueryOptions, Server, ServerError};

/// How a variable write or delete ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarWrite {
    /// Done at this index; the stored variable (None after a delete).
    Done(u64, Option<Variable>),
    /// The check-and-set index did not match: what is stored now (None: nothing).
    Conflict(Option<Variable>),
}

impl Server {
    /// `GET /v1/vars`: the variables under `prefix` the caller may list, in one namespace
    /// (`None`: all), without their items.
    pub async fn var_list(
        &self,
        namespace: Option<&str>,
        prefix: &str,
        caller: &ResolvedAcl,
        opts: &QueryOptions,
    ) -> (Vec<VariableMetadata>, u64) {
        let acl = caller.acl.clone();
        self.blocking_query(&[Table::Variables], opts, |snap| {
            snap.variables(namespace, prefix)
                .iter()
                .filter(|v| {
                    acl.allow_variable_operation(&v.meta.namespace, &v.meta.path, "list", None)
                })
                .map(|v| v.meta.clone())
                .collect()
        })
        .await
    }

    /// `GET /v1/var/:path`.
    pub async fn var_read(
        &self,
        namespace: &str,
        path: &str,
        opts: &QueryOptions,
    ) -> Result<(Variable, u64), ServerError> {
        let ns = namespace_or_default(namespace);
        let (v, index) = self
            .blocking_query(&[Table::Variables], opts, |snap| snap.variable(ns, path))
            .await;
        match v {
            Some(v) => Ok(((*v).clone(), index)),
            None => Err(ServerError::NotFound("variable not found".into())),
        }
    }

    /// `PUT /v1/var/:path`: writes `var` (its path and namespace already set by the
    /// caller); with `cas`, only if the stored ModifyIndex is that (0: must not exist).
    pub async fn var_put(&self, var: Variable, cas: Option<u64>) -> Result<VarWrite, ServerError> {
        let mut var = var;
        var.meta.namespace = namespace_or_default(&var.meta.namespace).to_string();
        var.validate().map_err(ServerError::BadRequest)?;
        self.require_namespace(&var.meta.namespace)?;
        let op = match cas {
            Some(index) => {
                var.meta.modify_index = index;
                VarOp::Cas
            }
            None => VarOp::Set,
        };
        let (ns, path) = (var.meta.namespace.clone(), var.meta.path.clone());
        self.var_command(op, var, &ns, &path).await
    }

    /// `DELETE /v1/var/:path`, with `cas` as for [`Server::var_put`].
    pub async fn var_delete(
        &self,
        namespace: &str,
        path: &str,
        cas: Option<u64>,
    ) -> Result<VarWrite, ServerError> {
        let ns = namespace_or_default(namespace);
        if ns == "*" {
            return Err(ServerError::BadRequest(
                "can not target wildcard (\"*\")namespace".into(),
            ));
        }
        let var = Variable {
            meta: VariableMetadata {
                namespace: ns.to_string(),
                path: path.to_string(),
                modify_index: cas.unwrap_or(0),
                ..Default::default()
            },
            ..Default::default()
        };
        let op = if cas.is_some() {
            VarOp::DeleteCas
        } else {
            VarOp::Delete
        };
        self.var_command(op, var, ns, path).await
    }

    async fn var_command(
        &self,
        op: VarOp,
        var: Variable,
        ns: &str,
        path: &str,
    ) -> Result<VarWrite, ServerError> {
        let now = now_nanos();
        let deleting = matches!(op, VarOp::Delete | VarOp::DeleteCas);
        match self.apply(Command::VarApply { op, var, now }).await {
            Ok(index) => {
                let stored = if deleting {
                    None
                } else {
                    self.state
                        .snapshot()
                        .variable(ns, path)
                        .map(|v| (*v).clone())
                };
                Ok(VarWrite::Done(index, stored))
            }
            Err(ServerError::Internal(m)) if m == VAR_CAS_CONFLICT => {
                let current = self.state.snapshot().variable(ns, path);
                Ok(VarWrite::Conflict(current.map(|v| (*v).clone())))
            }
            Err(e) => Err(e),
        }
    }

    fn require_namespace(&self, ns: &str) -> Result<(), ServerError> {
        if self.state.snapshot().namespace(ns).is_none() {
            return Err(ServerError::BadRequest(format!(
                "namespace {ns:?} does not exist"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ServerConfig;
    use std::collections::BTreeMap;

    fn var(path: &str, items: &[(&str, &str)]) -> Variable {
        Variable {
            meta: VariableMetadata {
                path: path.into(),
                ..Default::default()
            },
            items: items
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[tokio::test]
    async fn put_read_cas_conflict_and_delete() {
        let s = Server::new(ServerConfig::default());
        let VarWrite::Done(i1, Some(stored)) = s
            .var_put(var("app/db", &[("user", "a")]), Some(0))
            .await
            .unwrap()
        else {
            panic!("first write refused");
        };
        assert_eq!(
            (stored.meta.namespace.as_str(), stored.meta.modify_index),
            ("default", i1)
        );
        // A second create-only write conflicts and shows what is there.
        let w = s
            .var_put(var("app/db", &[("user", "b")]), Some(0))
            .await
            .unwrap();
        assert_eq!(w, VarWrite::Conflict(Some(stored.clone())));
        let (read, _) = s
            .var_read("", "app/db", &QueryOptions::default())
            .await
            .unwrap();
        assert_eq!(read.items["user"], "a");
        // Unconditional write, then delete with a stale index conflicts.
        s.var_put(var("app/db", &[("user", "c")]), None)
            .await
            .unwrap();
        let w = s.var_delete("default", "app/db", Some(i1)).await.unwrap();
        assert!(matches!(w, VarWrite::Conflict(Some(_))));
        assert!(matches!(
            s.var_delete("default", "app/db", None).await.unwrap(),
            VarWrite::Done(_, None)
        ));
        let e = s
            .var_read("default", "app/db", &QueryOptions::default())
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "variable not found");
        // Bad input in Nomad's words.
        let e = s.var_put(var("app/db", &[]), None).await.unwrap_err();
        assert_eq!(e.to_string(), "empty variables are invalid");
        let mut elsewhere = var("x", &[("a", "b")]);
        elsewhere.meta.namespace = "nope".into();
        let e = s.var_put(elsewhere, None).await.unwrap_err();
        assert_eq!(e.to_string(), "namespace \"nope\" does not exist");
    }
}
