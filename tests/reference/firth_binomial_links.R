# Case firth_binomial_links: mean bias-reduced (Kosmidis & Firth 2009 adjusted score) binomial
# regression with non-canonical links, brglm2 glm(..., method = "brglmFit", type = "AS_mean"):
# (a) brglm2::endometrial, HG ~ NV + PI + EH (NV quasi-separates HG), cloglog and probit;
# (b) vcd::SpaceShuttle, fail ~ Temperature (23 flights, 7 failures), cloglog and probit;
# (c) carData::Rossi as 4-week person-periods (discrete-time hazard, as discrete_time_rossi.R),
#     arrest ~ 0 + period_f + covariates, cloglog and logit, with the cluster-by-person sandwich.
args <- commandArgs(trailingOnly = FALSE)
source(file.path(dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)]))), "common.R"))
suppressPackageStartupMessages({ library(brglm2); library(survival); library(sandwich) })

br_fit <- function(form, link, data) {
  # 'non-integer #successes' warnings come from brglm2's adjusted pseudo-responses: harmless
  fit <- suppressWarnings(glm(form, family = binomial(link = link), data = data,
                              method = "brglmFit", type = "AS_mean", epsilon = 1e-12, maxit = 500))
  stopifnot(fit$converged)
  fit
}

# ordinary binomial log-likelihood at the fitted probabilities (brglm2's fit$y is the 0/1 outcome)
binom_loglik <- function(fit) {
  p <- fitted(fit); y <- fit$y
  sum(y * log(p) + (1 - y) * log(1 - p))
}

# the adjusted score at the estimate, computed from its definition (a check that it is ~0):
# U*_t = sum_i x_it [ (y_i - mu_i) mu'_i / (mu_i (1 - mu_i)) + h_i mu''_i / (2 mu'_i) ]
adjusted_score <- function(fit) {
  X <- model.matrix(fit); eta <- drop(X %*% coef(fit)); lk <- fit$family
  mu <- lk$linkinv(eta); d1 <- lk$mu.eta(eta)
  d2 <- numDeriv_free_d2(lk$link, eta)
  W <- d1^2 / (mu * (1 - mu))
  h <- W * rowSums((X %*% solve(crossprod(X, X * W))) * X)
  drop(crossprod(X, (fit$y - mu) * d1 / (mu * (1 - mu)) + 0.5 * h * d2 / d1))
}
numDeriv_free_d2 <- function(link, eta) {  # mu''(eta) in closed form
  switch(link,
         logit = { p <- plogis(eta); p * (1 - p) * (1 - 2 * p) },
         probit = -eta * dnorm(eta),
         cloglog = { e <- exp(eta); e * exp(-e) * (1 - e) })
}

one <- function(form, form_txt, link, data, data_name) {
  fit <- br_fit(form, link, data)
  b <- coef(fit); se <- summary(fit)$coefficients[, "Std. Error"]
  ml <- suppressWarnings(glm(form, family = binomial(link = link), data = data,
                             control = glm.control(epsilon = 1e-14, maxit = 1000)))
  list(
    r_call = sprintf("glm(%s, family = binomial(link = '%s'), data = %s, method = 'brglmFit', type = 'AS_mean', epsilon = 1e-12, maxit = 500)",
                     form_txt, link, data_name),
    converged = fit$converged, iterations = fit$iter, n = nobs(fit), n_events = sum(fit$y),
    columns = names(b),
    coefficients = coef_table(b, se, list(z = b / se, p_value = 2 * pnorm(-abs(b / se)))),
    se_definition = "sqrt(diag(solve(X' W X))) at the estimate, W = mu'^2 / (mu (1 - mu)) (expected information), as summary(fit)",
    loglik_at_estimate = binom_loglik(fit),
    max_abs_adjusted_score = max(abs(adjusted_score(fit))),
    plain_ml = list(r_call = "same formula and link, glm(..., control = glm.control(epsilon = 1e-14, maxit = 1000))",
                    converged = ml$converged, estimate = nv(coef(ml)),
                    se = nv(sqrt(diag(vcov(ml)))), loglik = as.numeric(logLik(ml))),
    fit = fit)
}

strip <- function(x) { x$fit <- NULL; x }

endo <- read_data("brglm2_endometrial.csv")
ss <- read_data("vcd_SpaceShuttle.csv")
ss <- ss[!is.na(ss$Fail), ]
ss$fail <- as.integer(ss$Fail == "yes")

# ---- (c) Rossi 4-week person-periods, coded exactly as discrete_time_rossi.R
d <- read_data("carData_Rossi.csv")
d <- d[, c("rownames", "week", "arrest", "fin", "age", "race", "wexp", "mar", "paro", "prio")]
d$id   <- d$rownames
d$fin  <- factor(d$fin,  levels = c("no", "yes"))
d$race <- factor(d$race, levels = c("black", "other"))
d$wexp <- factor(d$wexp, levels = c("no", "yes"))
d$mar  <- factor(d$mar,  levels = c("married", "not married"))
d$paro <- factor(d$paro, levels = c("no", "yes"))
pp4 <- survSplit(Surv(week, arrest) ~ ., data = d, cut = seq(4, 48, by = 4),
                 start = "tstart", end = "tstop", episode = "period")
pp4$period_f <- factor(pp4$period, levels = 1:13)
rossi_txt <- "arrest ~ 0 + period_f + fin + age + race + wexp + mar + paro + prio"

rossi_case <- function(link) {
  x <- one(as.formula(rossi_txt), rossi_txt, link, pp4, "pp4")
  fit <- x$fit
  # cluster-by-person sandwich at the bias-reduced estimate: bread = solve(X'WX), meat = sum over
  # persons of the ordinary score contributions x_i (y_i - mu_i) mu'_i / (mu_i (1 - mu_i)),
  # small-sample factor G/(G-1) (n-1)/(n-k) (sandwich::vcovCL's default type HC1)
  X <- model.matrix(fit); eta <- drop(X %*% coef(fit)); lk <- fit$family
  mu <- lk$linkinv(eta); d1 <- lk$mu.eta(eta)
  S <- X * ((fit$y - mu) * d1 / (mu * (1 - mu)))
  Sc <- rowsum(S, pp4$id)
  B <- vcov(fit)
  n <- nrow(X); k <- ncol(X); G <- nrow(Sc)
  V <- G / (G - 1) * (n - 1) / (n - k) * B %*% crossprod(Sc) %*% B
  vcl <- vcovCL(fit, cluster = pp4$id, type = "HC1")
  x$cluster_se <- list(
    definition = "G/(G-1) (n-1)/(n-k) B (sum_g s_g s_g') B, B = vcov(fit), s_g = sum over the person's periods of the ordinary score contributions at the AS_mean estimate",
    n_clusters = G, se = nv(sqrt(diag(V))),
    vcovCL_HC1_se = nv(sqrt(diag(vcl))),
    max_abs_diff_vs_vcovCL = max(abs(sqrt(diag(V)) - sqrt(diag(vcl)))))
  x
}

res <- list(
  case = "firth_binomial_links",
  note = "AS_mean = mean bias reduction by the adjusted score (Kosmidis & Firth 2009); for the canonical logit link it is Firth (1993)'s penalised likelihood (see firth_logistic), for probit and cloglog it has no objective function (no penalised log-likelihood).",
  endometrial = list(
    dataset = list(package = "brglm2", item = "endometrial", csv = "data/brglm2_endometrial.csv"),
    coding = "as firth_logistic: HG 0/1 outcome; NV, PI, EH numeric as stored",
    separation_note = "NV = 1 occurs only with HG = 1: the plain ML estimate of NV is infinite for every link (glm() may still report convergence at a finite value once the deviance stops changing, as it does for cloglog; plain_ml shows where it stopped)",
    cloglog = NULL, probit = NULL),
  space_shuttle = list(
    dataset = list(package = "vcd", item = "SpaceShuttle", csv = "data/vcd_SpaceShuttle.csv"),
    coding = "as firth_logistic: fail = 1 if Fail == 'yes'; the Fail = NA row (flight 4) dropped -> 23 flights, 7 failures",
    cloglog = NULL, probit = NULL),
  rossi_discrete = list(
    dataset = list(package = "carData", item = "Rossi", csv = "data/carData_Rossi.csv"),
    coding = "as discrete_time_rossi (a): survSplit(cut = seq(4, 48, 4)) -> 4991 person-periods, 13 period dummies (period_f1..period_f13, no intercept), finyes, age, raceother, wexpyes, 'marnot married', paroyes, prio",
    cloglog = NULL, logit = NULL),
  versions = versions(c("brglm2", "sandwich", "survival", "stats", "jsonlite"))
)
for (lk in c("cloglog", "probit")) {
  res$endometrial[[lk]] <- strip(one(HG ~ NV + PI + EH, "HG ~ NV + PI + EH", lk, endo, "endo"))
  res$space_shuttle[[lk]] <- strip(one(fail ~ Temperature, "fail ~ Temperature", lk, ss, "ss"))
}
for (lk in c("cloglog", "logit")) res$rossi_discrete[[lk]] <- strip(rossi_case(lk))

write_case(res, "firth_binomial_links")
for (k in c("endometrial", "space_shuttle", "rossi_discrete")) for (lk in setdiff(names(res[[k]]), c("dataset", "coding", "separation_note"))) {
  x <- res[[k]][[lk]]; cat("==", k, lk, "iter", x$iterations, "max|U*|", x$max_abs_adjusted_score, "\n")
  print(cbind(br = unlist(x$coefficients$estimate), br_se = unlist(x$coefficients$se),
              ml = unlist(x$plain_ml$estimate)))
  if (!is.null(x$cluster_se)) cat("cluster SE vs vcovCL max diff", x$cluster_se$max_abs_diff_vs_vcovCL, "\n")
}
