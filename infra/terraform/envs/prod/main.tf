# prod: a NAT gateway per zone, Multi-AZ database with deletion protection, a Redis replica
# with automatic failover, at least two API tasks; autoscaling with room to grow.

locals {
  name = "litebase-${var.environment}"
}

module "keys" {
  source = "../../modules/keys"
  name   = local.name
}

module "network" {
  source             = "../../modules/network"
  name               = local.name
  availability_zones = var.availability_zones
  single_nat_gateway = false
  kms_key_arn        = module.keys.key_arn
}

module "registry" {
  source      = "../../modules/registry"
  name        = local.name
  kms_key_arn = module.keys.key_arn
  keep_images = 50
}

module "database" {
  source                   = "../../modules/database"
  name                     = local.name
  subnet_ids               = module.network.private_subnet_ids
  security_group_id        = module.network.security_group_ids.database
  kms_key_arn              = module.keys.key_arn
  instance_class           = "db.m7g.large"
  allocated_storage_gb     = 100
  max_allocated_storage_gb = 1000
  multi_az                 = true
  backup_retention_days    = 30
  deletion_protection      = true
}

module "cache" {
  source             = "../../modules/cache"
  name               = local.name
  subnet_ids         = module.network.private_subnet_ids
  security_group_id  = module.network.security_group_ids.cache
  kms_key_arn        = module.keys.key_arn
  node_type          = "cache.m7g.large"
  replicas           = 1
  automatic_failover = true
}

module "edge" {
  source              = "../../modules/edge"
  name                = local.name
  vpc_id              = module.network.vpc_id
  subnet_ids          = module.network.public_subnet_ids
  security_group_id   = module.network.security_group_ids.alb
  certificate_arn     = var.certificate_arn
  deletion_protection = true
}

module "service" {
  source                       = "../../modules/service"
  name                         = local.name
  image                        = "${module.registry.repository_url}:${var.image_tag}"
  ecr_repository_arn           = module.registry.repository_arn
  kms_key_arn                  = module.keys.key_arn
  private_subnet_ids           = module.network.private_subnet_ids
  api_security_group_id        = module.network.security_group_ids.api
  worker_security_group_id     = module.network.security_group_ids.worker
  target_group_arn             = module.edge.target_group_arn
  request_count_label          = module.edge.request_count_label
  database_url                 = "postgresql://${module.database.username}@${module.database.address}:${module.database.port}/${module.database.database_name}?sslmode=require"
  database_password_secret_arn = module.database.password_secret_arn
  redis_url                    = "rediss://${module.cache.primary_endpoint}:6379/0?ssl_cert_reqs=required"
  redis_password_secret_arn    = module.cache.auth_token_secret_arn
  openai_api_key_secret_arn    = var.openai_api_key_secret_arn
  environment = merge(
    {
      PUBLIC_URL   = "https://${var.domain_name}"
      CORS_ORIGINS = join(",", var.cors_origins)
    },
    var.settings,
  )
  api_cpu            = 1024
  api_memory         = 2048
  api_count          = { min = 2, desired = 2, max = 20 }
  worker_cpu         = 2048
  worker_memory      = 4096
  worker_concurrency = 4
  worker_count       = { min = 2, desired = 2, max = 40 }
  log_retention_days = 365
  depends_on         = [module.edge]
}
