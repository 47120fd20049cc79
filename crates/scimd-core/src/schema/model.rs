//! RFC 7643 schema documents as typed values. Missing characteristics take the
//! defaults of RFC 7643 section 2.2, so operator-written schemas can be terse.

use serde::{Deserialize, Serialize};

/// An attribute's data type (RFC 7643 section 2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

/// Who may write an attribute (RFC 7643 section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Mutability {
    ReadOnly,
    #[default]
    ReadWrite,
    Immutable,
    WriteOnly,
}

/// When an attribute appears in responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Returned {
    Always,
    Never,
    #[default]
    Default,
    Request,
}

/// The uniqueness a service provider enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum Uniqueness {
    #[default]
    None,
    Server,
    Global,
}

/// One attribute definition, possibly complex.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Attribute {
    pub name: String,
    #[serde(rename = "type")]
    pub typ: AttrType,
    #[serde(default)]
    pub multi_valued: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub case_exact: bool,
    #[serde(default)]
    pub mutability: Mutability,
    #[serde(default)]
    pub returned: Returned,
    #[serde(default)]
    pub uniqueness: Uniqueness,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canonical_values: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_attributes: Vec<Attribute>,
}

impl Attribute {
    /// The sub-attribute named `name`, compared case-insensitively.
    pub fn sub(&self, name: &str) -> Option<&Attribute> {
        self.sub_attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// A single-valued complex attribute identified by its `value` alone: it
    /// has a `value` sub-attribute, and every other sub-attribute a client
    /// may write is a reference (`$ref`, which the value determines). Such an
    /// attribute also takes the bare value (`"manager": "<id>"`, as Entra ID
    /// sends it), and an empty value removes it. Decided from the schema,
    /// never from the attribute's name.
    pub fn takes_bare_value(&self) -> bool {
        self.typ == AttrType::Complex
            && !self.multi_valued
            && self.sub("value").is_some()
            && self.sub_attributes.iter().all(|s| {
                s.name.eq_ignore_ascii_case("value")
                    || s.typ == AttrType::Reference
                    || s.mutability == Mutability::ReadOnly
            })
    }

    /// True for attributes whose string values compare case-sensitively.
    pub fn compares_exactly(&self) -> bool {
        self.case_exact || matches!(self.typ, AttrType::Binary)
    }
}

/// A schema document (RFC 7643 section 7).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Schema {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub attributes: Vec<Attribute>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
}

impl Schema {
    /// The top-level attribute named `name`, compared case-insensitively.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// A schema extension of a resource type.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaExtension {
    pub schema: String,
    #[serde(default)]
    pub required: bool,
}

/// A resource type document (RFC 7643 section 6).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceType {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<String>,
    pub id: String,
    pub name: String,
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub schema: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema_extensions: Vec<SchemaExtension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
    /// scimd's own key (not in RFC 7643, so never served): resources of this
    /// type belong to a resource of another type, named by one attribute.
    #[serde(default, rename = "x-scimd-owner", skip_serializing)]
    pub owner: Option<Owner>,
}

/// Ownership of a resource type's resources (`x-scimd-owner`): `attribute`
/// must name an existing resource of `resourceType`, and deleting that
/// resource deletes the resources it owns (FIDO devices and their user).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Owner {
    pub attribute: String,
    pub resource_type: String,
}
