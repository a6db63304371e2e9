//! Array nodes (map tasks, and arrays over launch plans): each item's inputs, directory and
//! child execution, and the gathered outputs of a finished array.

use super::cache::catalog_key;
use super::{Cx, child_item_id, key_of, none_literal};
use crate::Error;
use contrail_blob::layout;
use contrail_engine::{
    ChildStatus, ExecState, Failure, Item, NodeKind, Observation, Plan, resolve,
};
use contrail_idl::core;
use contrail_store::CatalogKey;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;

impl Cx<'_> {
    /// One array item's inputs: its element of every split input, from the node's whole
    /// inputs (read once per round, however many items ask); `Ok(Err(_))` is a data error.
    pub(super) fn item_inputs(
        &self,
        plan: &Plan,
        node: usize,
        item: u32,
    ) -> Result<Result<core::LiteralMap, String>, Error> {
        let NodeKind::Array(a) = &plan.nodes[node].kind else {
            return Ok(Err("not an array node".into()));
        };
        let key = layout::node_inputs(self.wdir, &plan.nodes[node].id);
        let whole = {
            let mut memo = self.inputs_memo.borrow_mut();
            match memo.as_ref() {
                Some((k, m)) if *k == key => m.clone(),
                _ => {
                    let m = Arc::new(self.c.read_map(&key)?);
                    *memo = Some((key, m.clone()));
                    m
                }
            }
        };
        Ok(resolve::item_inputs(&whole, item as usize, &a.bound_inputs).map_err(|e| e.0))
    }

    /// The cache key of one array item.
    pub(super) fn item_key(
        &self,
        plan: &Plan,
        node: usize,
        item: u32,
    ) -> Result<Result<CatalogKey, String>, Error> {
        let Some(task) = plan.task(node) else {
            return Ok(Err("no task".into()));
        };
        Ok(self
            .item_inputs(plan, node, item)?
            .and_then(|inputs| catalog_key(task, &inputs)))
    }

    /// Where an array item with its own inputs file finds it.
    pub(super) fn item_inputs_key(&self, plan: &Plan, node: usize, item: u32) -> String {
        layout::item_inputs(self.wdir, &plan.nodes[node].id, item)
    }

    pub(super) fn item_dir(&self, plan: &Plan, node: usize, item: u32, attempt: u32) -> String {
        layout::item_dir(self.wdir, &plan.nodes[node].id, item, attempt)
    }

    /// Creates the child execution of one item of an array over a launch plan.
    pub(super) fn launch_child_item(
        &self,
        plan: &Plan,
        node: usize,
        item: u32,
    ) -> Result<Option<Observation>, Error> {
        let k = self.k;
        let NodeKind::Array(a) = &plan.nodes[node].kind else {
            return Ok(None);
        };
        let Some(lp) = &a.launch_plan else {
            return Ok(None);
        };
        let rejected = match self.item_inputs(plan, node, item)? {
            Ok(inputs) => {
                let child = child_item_id(k, plan, node, item);
                self.launch_child(plan, node, child, lp, inputs)?
            }
            Err(e) => Some(Failure::system("BindingResolutionFailure", e, false)),
        };
        Ok(rejected.map(|f| Observation::ChildItem {
            node,
            item,
            status: ChildStatus::Failed(f),
        }))
    }

    pub(super) fn abort_child_item(
        &self,
        plan: &Plan,
        node: usize,
        item: u32,
    ) -> Result<Option<Observation>, Error> {
        let k = self.k;
        self.abort_child(key_of(&child_item_id(k, plan, node, item)))?;
        Ok(None)
    }

    /// How one item's child execution stands; a succeeded child's outputs become the item's.
    pub(super) fn observe_child_item(
        &self,
        plan: &Plan,
        node: usize,
        item: u32,
    ) -> Result<Observation, Error> {
        let child = key_of(&child_item_id(self.k, plan, node, item));
        let mut status = self.child_status(&child)?;
        if status == ChildStatus::Succeeded {
            // The item's outputs are the child's; gathered like a task item's.
            let from = layout::attempt_outputs(
                &layout::workflow_dir(&child.project, &child.domain, &child.name),
                "end-node",
                0,
            );
            let to = layout::outputs_in(&self.item_dir(plan, node, item, 0));
            if let Err(f) = self.copy_map(&from, &to)? {
                status = ChildStatus::Failed(f);
            }
        }
        Ok(Observation::ChildItem { node, item, status })
    }

    /// Writes a finished array's outputs: one list per output, an item's value or none.
    pub(super) fn publish_array(
        &self,
        plan: &Plan,
        state: &ExecState,
        i: usize,
        out: &str,
    ) -> Result<Result<(), Failure>, Error> {
        let blob = &self.c.blob;
        let Some(a) = state.nodes[i].array() else {
            return Ok(Ok(()));
        };
        let mut names: Vec<String> = plan
            .task(i)
            .and_then(|t| t.interface.as_ref())
            .and_then(|x| x.outputs.as_ref())
            .map(|v| v.variables.keys().cloned().collect())
            .unwrap_or_default();
        if plan.task(i).is_none() {
            // Over a launch plan: the outputs are named as the children's are.
            if let Some(first) = (0..a.len() as u32).find(|x| a.get(*x) == Item::Succeeded) {
                let key = layout::outputs_in(&self.item_dir(plan, i, first, a.attempt(first)));
                names = self.c.read_map(&key)?.literals.into_keys().collect();
            }
        }
        let mut cols: BTreeMap<String, Vec<core::Literal>> =
            names.iter().map(|n| (n.clone(), Vec::new())).collect();
        for item in 0..a.len() as u32 {
            let got = if a.get(item) == Item::Succeeded && !names.is_empty() {
                let key = layout::outputs_in(&self.item_dir(plan, i, item, a.attempt(item)));
                Some(self.c.read_map(&key)?)
            } else {
                None
            };
            for (name, col) in cols.iter_mut() {
                let lit = got
                    .as_ref()
                    .and_then(|m| m.literals.get(name).cloned())
                    .unwrap_or_else(none_literal);
                col.push(lit);
            }
        }
        let m = core::LiteralMap {
            literals: cols
                .into_iter()
                .map(|(n, literals)| {
                    (
                        n,
                        core::Literal {
                            value: Some(core::literal::Value::Collection(
                                core::LiteralCollection { literals },
                            )),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        };
        blob.put(out, &m.encode_to_vec())?;
        Ok(Ok(()))
    }
}
